// DOM and formatting helpers. Text always goes in as text nodes, never as
// HTML, so names and log lines cannot inject markup.
import { t } from "./i18n.js";

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function clear(e) {
  while (e.firstChild) e.firstChild.remove();
  return e;
}

const statusClass = {
  creating: "gray", auditing: "blue", pending: "blue", running: "blue",
  completed: "green", failed: "red", audit_failed: "red", timeout: "orange", canceled: "gray",
  exited: "gray", created: "gray", succeeded: "green", stopped: "gray", waiting: "gray",
};

// badge shows a status in colour and words.
export function badge(status) {
  return el("span", { class: `badge ${statusClass[status] || "gray"}`, dataset: { status } },
    el("span", { class: "dot" }), t(`status.${status}`));
}

export function verdictBadge(verdict) {
  const v = verdict || "none";
  const cls = { pass: "green", fail: "red", none: "gray" }[v];
  return el("span", { class: `badge ${cls}`, dataset: { verdict: v } }, el("span", { class: "dot" }), t(`images.verdict.${v}`));
}

export function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// duration formats milliseconds as 1h2m, 3m4s or 5s.
export function duration(ms) {
  if (ms == null || ms < 0) return "";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const u = (n, k) => `${n}${t(`unit.${k}`)}`;
  if (h) return u(h, "h") + u(m, "m");
  if (m) return u(m, "m") + u(sec, "s");
  return u(sec, "s");
}

export function ago(iso) {
  if (!iso) return t("common.never");
  return t("common.ago", { t: duration(Date.now() - Date.parse(iso)) });
}

export function time(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString();
}

export function shortDigest(d) {
  if (!d) return "";
  const i = d.indexOf(":");
  return d.slice(0, i + 13);
}

export function notice(kind, text) {
  return el("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

// poller calls fn now and every ms milliseconds until stop() is called.
export function poller(fn, ms) {
  let timer = null, stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

// icon is a small drawn icon: "folder", "file" or "bucket".
export function icon(kind) {
  return el("span", { class: `ico ${kind}`, "aria-hidden": "true" });
}

// confirmDialog asks a yes/no question in the page (not the browser's
// confirm(), which blocks the page and cannot be styled or translated).
export function confirmDialog(message, okLabel) {
  return new Promise((resolve) => {
    const ok = el("button", { class: "button danger", id: "confirm-ok", value: "ok" }, okLabel || t("common.ok"));
    const cancel = el("button", { class: "button", id: "confirm-cancel", value: "cancel" }, t("common.cancel"));
    const d = el("dialog", { class: "confirm", id: "confirm" },
      el("form", { method: "dialog" }, el("p", {}, message), el("div", { class: "actions" }, ok, cancel)));
    d.addEventListener("close", () => {
      d.remove();
      resolve(d.returnValue === "ok");
    });
    document.body.append(d);
    d.showModal();
    cancel.focus();
  });
}
