// Language switch: 简体中文 or English, first from the browser's language,
// then as the user chose it (kept in localStorage).
import en from "./lang/en.js";
import zh from "./lang/zh-CN.js";

export const languages = [
  { code: "zh-CN", name: "简体中文", dict: zh },
  { code: "en", name: "English", dict: en },
];

const storeKey = "malocal.lang";
let current = pick();
const listeners = [];

function pick() {
  const saved = localStorage.getItem(storeKey);
  if (languages.some((l) => l.code === saved)) return saved;
  const nav = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  return nav.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export function lang() {
  return current;
}

export function setLang(code) {
  if (!languages.some((l) => l.code === code) || code === current) return;
  current = code;
  localStorage.setItem(storeKey, code);
  document.documentElement.lang = code;
  for (const fn of listeners) fn(code);
}

// onLangChange calls fn after every switch.
export function onLangChange(fn) {
  listeners.push(fn);
}

// t translates key, filling {name} placeholders from vars. A key missing in
// the current language falls back to English, then to the key itself.
export function t(key, vars = {}) {
  const dict = languages.find((l) => l.code === current).dict;
  const s = dict[key] ?? en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

// translateStatic fills every [data-i18n] element of root.
export function translateStatic(root = document) {
  for (const e of root.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  document.title = t("app.title");
  document.documentElement.lang = current;
}
