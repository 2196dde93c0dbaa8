// The console's shell: routes in the URL's fragment, the language switch,
// and the sign-in notice shown when the API answers 401.
import { languages, lang, setLang, onLangChange, translateStatic } from "./i18n.js";
import { setUnauthorizedHandler, post } from "./api.js";
import { clear } from "./util.js";
import * as jobs from "./pages/jobs.js";
import * as job from "./pages/job.js";
import * as images from "./pages/images.js";
import * as objects from "./pages/objects.js";
import * as signin from "./pages/signin.js";

const routes = [
  [/^\/jobs\/new$/, jobs.renderCreate, "jobs"],
  [/^\/jobs\/([^/]+)$/, job.render, "jobs"],
  [/^\/jobs$/, jobs.render, "jobs"],
  [/^\/images$/, images.render, "images"],
  [/^\/objects(?:\/([^/]+)(?:\/(.*))?)?$/, objects.render, "objects"],
  [/^\/signin$/, signin.render, ""],
];

let cleanup = null;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const [path, query] = hash.split("?");
  const main = document.getElementById("main");
  if (cleanup) cleanup();
  cleanup = null;
  clear(main);
  for (const [re, render, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.id === `nav-${nav}`);
    const params = m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
    cleanup = render(main, params, new URLSearchParams(query || "")) || null;
    return;
  }
  location.hash = "#/jobs";
}

function setupLang() {
  const sel = document.getElementById("lang");
  for (const l of languages) {
    const o = document.createElement("option");
    o.value = l.code;
    o.textContent = l.name;
    sel.append(o);
  }
  sel.value = lang();
  sel.addEventListener("change", () => setLang(sel.value));
  onLangChange(() => {
    sel.value = lang();
    translateStatic();
    route();
  });
  translateStatic();
}

setUnauthorizedHandler(() => {
  if (!location.hash.startsWith("#/signin")) location.hash = "#/signin";
});
// Signing out ends the session on the emulator too: the cookie is
// worthless from then on, even if a copy of it was kept.
document.getElementById("signout").addEventListener("click", async () => {
  try {
    await post("/logout");
  } catch {}
  location.hash = "#/signin?signedout=1";
});
setupLang();
window.addEventListener("hashchange", route);
route();
