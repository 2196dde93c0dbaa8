// The job page's "Resource usage" panel: a chart per metric (CPU, memory,
// network in and out, and GPU utilisation and memory when the tasks have
// GPUs), one line per task. It loads the stored samples and then takes
// live ones from the job's websocket.
import { t } from "../i18n.js";
import { get, prefix } from "../api.js";
import { el, clear, bytes } from "../util.js";
import { lineChart, colorOf } from "../charts.js";

export function usagePanel(job) {
  const body = el("div", { class: "charts", id: "usage-charts" });
  const note = el("div", { class: "muted small", id: "usage-note" });
  const section = el("section", { class: "card", id: "usage" },
    el("div", { class: "logs-head" }, el("h2", {}, t("usage.title")), el("span", { class: "muted small", id: "usage-count" })),
    note, body);
  const samples = new Map();
  let unavailable = "", interval = 0, timer = null, closed = false;

  const add = (s) => {
    samples.set(`${s.task}|${s.time}`, s);
    schedule();
  };
  const schedule = () => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = null;
      draw();
    }, 200);
  };
  const draw = () => {
    const byTask = [];
    for (const s of samples.values()) (byTask[s.task] ||= []).push(s);
    for (const list of byTask) if (list) list.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    section.querySelector("#usage-count").textContent = samples.size ? t("usage.count", { n: samples.size, s: interval / 1e9 || 3 }) : "";
    note.textContent = !samples.size ? (unavailable || t(["completed", "failed", "canceled", "timeout", "audit_failed"].includes(job.status) ? "usage.none" : "usage.waiting")) : "";
    clear(body);
    if (!samples.size) return;
    // Every task has its line and legend entry, sampled or not yet.
    const tasks = Array.from({ length: Math.max(job.spec.nodes || 0, byTask.length) }, (_, i) => ({ i, list: byTask[i] || [] }));
    const label = (i) => t("job.task", { i });
    const series = (f) => tasks.map(({ i, list }) => ({ label: label(i), color: colorOf(i), points: list.map((s) => f(s)).filter(Boolean) }));
    const cpuLimit = Math.max(0, ...[...samples.values()].map((s) => s.cpu_limit || 0));
    const memLimit = Math.max(0, ...[...samples.values()].map((s) => s.memory_limit || 0));
    const cores = (v) => `${v.toFixed(2)} ${t("usage.cores")}`;
    body.append(
      lineChart({ id: "chart-cpu", title: t("usage.cpu"), yMax: cpuLimit, empty: t("usage.none"),
        series: series((s) => [Date.parse(s.time), s.cpu, s.cpu_limit ? (100 * s.cpu) / s.cpu_limit : null]),
        fmt: (v, p) => (p && p[2] != null ? `${cores(v)} (${p[2].toFixed(0)}%)` : cores(v)) }),
      lineChart({ id: "chart-memory", title: memLimit ? t("usage.memoryOf", { limit: bytes(memLimit) }) : t("usage.memory"), empty: t("usage.none"),
        series: series((s) => [Date.parse(s.time), s.memory, s.memory_limit ? (100 * s.memory) / s.memory_limit : null]),
        fmt: (v, p) => (p && p[2] != null ? `${bytes(Math.round(v))} (${p[2].toFixed(0)}%)` : bytes(Math.round(v))) }),
      lineChart({ id: "chart-net-in", title: t("usage.netIn"), empty: t("usage.none"), series: rates(tasks, "net_rx", label), fmt: rate }),
      lineChart({ id: "chart-net-out", title: t("usage.netOut"), empty: t("usage.none"), series: rates(tasks, "net_tx", label), fmt: rate }));
    if ([...samples.values()].some((s) => s.gpus && s.gpus.length)) {
      const gpuSeries = (f) => tasks.flatMap(({ i, list }) => {
        const ids = [...new Set(list.flatMap((s) => (s.gpus || []).map((g) => g.index)))];
        return ids.map((gi, k) => ({ label: `${label(i)} · GPU ${gi}`, color: colorOf(i + k * 3),
          points: list.map((s) => (s.gpus || []).find((g) => g.index === gi)).map((g, n) => g && [Date.parse(list[n].time), f(g)]).filter(Boolean) }));
      });
      body.append(
        lineChart({ id: "chart-gpu", title: t("usage.gpu"), yMax: 100, empty: t("usage.none"), series: gpuSeries((g) => g.util), fmt: (v) => `${v.toFixed(0)}%` }),
        lineChart({ id: "chart-gpu-memory", title: t("usage.gpuMemory"), empty: t("usage.none"), series: gpuSeries((g) => g.memory), fmt: (v) => bytes(Math.round(v)) }));
    }
  };
  const load = async () => {
    try {
      const m = await get(`/jobs/${encodeURIComponent(job.id)}/metrics`);
      unavailable = m.unavailable || "";
      interval = parseInterval(m.interval);
      for (const s of m.samples) samples.set(`${s.task}|${s.time}`, s);
    } catch (e) {
      unavailable = e.message;
    }
    draw();
  };
  load();
  return {
    el: section,
    add,
    update: (j) => {
      const was = job.status;
      job = j;
      if (was !== j.status) schedule();
    },
    reload: load,
    close: () => {
      closed = true;
      clearTimeout(timer);
    },
  };
}

// rates turns a byte counter into bytes per second between samples.
function rates(tasks, key, label) {
  return tasks.map(({ i, list }) => {
    const points = [];
    for (let n = 1; n < list.length; n++) {
      const dt = (Date.parse(list[n].time) - Date.parse(list[n - 1].time)) / 1000;
      const d = (list[n][key] || 0) - (list[n - 1][key] || 0);
      if (dt > 0 && d >= 0) points.push([Date.parse(list[n].time), d / dt]);
    }
    return { label: label(i), color: colorOf(i), points };
  });
}

const rate = (v) => `${bytes(Math.round(v))}/s`;

// parseInterval reads "3s" (the API's duration) as nanoseconds.
function parseInterval(s) {
  const m = /^([\d.]+)(ms|s|m)$/.exec(s || "");
  if (!m) return 0;
  return Number(m[1]) * { ms: 1e6, s: 1e9, m: 60e9 }[m[2]];
}

// logURL is the download address of one task's log (task >= 0) or of the
// zip archive of all tasks.
export function logURL(jobID, task) {
  return `${prefix}/jobs/${encodeURIComponent(jobID)}/logs?download=1${task >= 0 ? `&task=${task}` : ""}`;
}
