// A job's page: status timeline, audit report when the audit failed, a
// tab per task with its live log, exit codes and a stop button.
import { t } from "../i18n.js";
import { get, post, del, logSocket } from "../api.js";
import { el, clear, badge, time, duration, notice, poller, confirmDialog } from "../util.js";
import { auditReport } from "./images.js";
import { usagePanel, logURL } from "./usage.js";

export function render(main, [id]) {
  const head = el("div", { class: "page-head" });
  const auditBox = el("div", { id: "audit-box" });
  const overview = el("dl", { class: "details", id: "job-overview" });
  const timeline = el("ol", { class: "timeline", id: "timeline" });
  const tasks = el("tbody", { id: "tasks-body" });
  const logs = el("section", { class: "card", id: "logs", hidden: true });
  const usageBox = el("div", { id: "usage-box" });
  const status = el("div");
  // Tasks and their logs, what people watch, on the wide side; the
  // job's details and timeline beside them.
  main.append(
    el("a", { href: "#/jobs", class: "muted" }, "← ", t("job.back")),
    head, status, auditBox,
    el("div", { class: "job-grid" },
      el("div", {},
        el("section", { class: "card flush" }, el("h2", { class: "pad" }, t("job.tasks")),
          el("table", { class: "table", id: "tasks-table" },
            el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, t("job.host")), el("th", {}, t("jobs.col.status")),
              el("th", {}, t("job.exitCode")), el("th", {}, t("jobs.col.duration")))), tasks)),
        usageBox, logs),
      el("div", {},
        el("section", { class: "card" }, el("h2", {}, t("job.overview")), overview),
        el("section", { class: "card" }, el("h2", {}, t("job.timeline")), timeline))));

  let streams = null, usage = null, auditShown = false, final = false;
  const p = poller(async () => {
    if (final) return;
    let j;
    try {
      j = await get(`/jobs/${encodeURIComponent(id)}`);
      clear(status);
    } catch (e) {
      clear(status).append(notice("error", e.status === 404 ? t("job.notFound", { id }) : e.message));
      return;
    }
    final = ["audit_failed", "completed", "failed", "canceled", "timeout"].includes(j.status);
    renderHead(head, j);
    renderOverview(overview, j);
    renderTimeline(timeline, j);
    renderTasks(tasks, j);
    if (j.status === "audit_failed" && !auditShown) {
      auditShown = true;
      renderAudit(auditBox, j);
    }
    const started = j.status !== "audit_failed" && j.status !== "creating" && j.status !== "auditing";
    if (!usage && started) {
      usage = usagePanel(j);
      usageBox.append(usage.el);
    }
    if (usage) usage.update(j);
    if (!streams && started) streams = openLogs(logs, j, (m) => usage && usage.add(m));
    if (final) {
      p.stop();
      // The last samples, taken after the socket's end, come with this.
      if (usage) usage.reload();
    }
  }, 1500);
  return () => {
    p.stop();
    if (streams) streams.close();
    if (usage) usage.close();
  };
}

function renderHead(head, j) {
  const final = ["audit_failed", "completed", "failed", "canceled", "timeout"].includes(j.status);
  const actions = el("div", { class: "actions" });
  // Copy: the create form filled from this job, as the platform's re-create.
  actions.append(el("a", { class: "button", id: "copy-job", href: `#/jobs/new?copy=${encodeURIComponent(j.id)}` }, "⧉ ", t("job.copy")));
  if (j.status !== "audit_failed" && j.status !== "creating" && j.status !== "auditing") {
    actions.append(el("a", { class: "button", id: "download-logs", href: logURL(j.id, -1), download: "" }, "⤓ ", t("job.downloadAll")));
  }
  if (!final) {
    const stop = el("button", { class: "button danger", id: "stop-job" }, "■ ", t("job.stop"));
    stop.addEventListener("click", async () => {
      if (!(await confirmDialog(t("job.confirmStop", { name: j.spec.name }), t("job.stop")))) return;
      stop.disabled = true;
      stop.textContent = t("job.stopping");
      try {
        await post(`/jobs/${encodeURIComponent(j.id)}/stop`);
      } catch (e) {
        stop.disabled = false;
        stop.textContent = t("job.stop");
        clear(head.querySelector(".head-error") || head.appendChild(el("div", { class: "head-error field-error" }))).append(e.message);
      }
    });
    actions.append(stop);
  } else {
    actions.append(el("button", { class: "button", id: "delete-job", onclick: async () => {
      if (!(await confirmDialog(t("common.confirmDelete", { name: j.spec.name }), t("common.delete")))) return;
      try {
        await del(`/jobs/${encodeURIComponent(j.id)}`);
        location.hash = "#/jobs";
      } catch (e) {
        clear(head.querySelector(".head-error") || head.appendChild(el("div", { class: "head-error field-error" }))).append(e.message);
      }
    } }, t("job.delete")));
  }
  clear(head).append(
    el("div", {}, el("h1", {}, j.spec.name, " ", el("span", { id: "job-status" }, badge(j.status))), el("div", { class: "muted mono small" }, j.id),
      j.spec.description ? el("p", { class: "description", id: "job-description" }, j.spec.description) : null),
    actions);
}

function renderOverview(dl, j) {
  const row = (k, v, cls) => (v === undefined || v === "" || v === null ? [] : [el("dt", {}, t(k)), el("dd", { class: cls }, v)]);
  const exit = j.exit_code !== undefined && j.exit_code !== null ? String(j.exit_code) : "";
  clear(dl).append(
    ...row("job.description", j.spec.description),
    ...row("job.image", j.spec.image, "mono"),
    ...row("job.command", j.spec.command.join(" "), "mono"),
    ...row("job.nodes", String(j.spec.nodes)),
    ...row("job.appUrl", j.spec.app_url, "mono"),
    ...row("job.dataUrl", j.spec.data_url, "mono"),
    ...row("job.trainUrl", j.spec.train_url, "mono"),
    ...row("job.logUrl", j.spec.log_url, "mono"),
    ...row("job.created", time(j.created)),
    ...row("job.started", time(j.started)),
    ...row("job.finished", time(j.finished)),
    ...row("job.exitCode", exit, "mono"),
    // An audit failure's reasons are in the report above.
    ...row("job.reason", j.status === "audit_failed" ? "" : j.reason));
}

function renderTimeline(ol, j) {
  clear(ol);
  for (const e of j.events || []) {
    ol.append(el("li", { class: e.status ? "st" : "" },
      el("time", {}, new Date(e.time).toLocaleTimeString()),
      e.status ? badge(e.status) : null,
      el("span", { class: "msg" }, e.message)));
  }
}

function renderTasks(body, j) {
  clear(body);
  for (const task of j.tasks || []) {
    const end = task.finished ? Date.parse(task.finished) : Date.now();
    const code = task.exit_code;
    body.append(el("tr", { dataset: { task: task.index } },
      el("td", {}, String(task.index)),
      el("td", { class: "mono" }, task.host),
      el("td", {}, task.status ? badge(task.status) : "–"),
      el("td", { class: `mono exit ${code === 0 ? "ok" : code ? "bad" : ""}` }, code === undefined || code === null ? "–" : String(code)),
      el("td", {}, task.started ? duration(end - Date.parse(task.started)) : "–")));
  }
}

async function renderAudit(box, j) {
  const card = el("section", { class: "card alert-card", id: "audit-failed" },
    el("h2", {}, "⚠ ", t("job.audit.title")), el("p", {}, t("job.audit.body")));
  box.append(card);
  // The full report (rule, layer, path) when the registry still has the
  // image; the job's stored reasons otherwise.
  try {
    const a = await get(`/images/audit?repo=${encodeURIComponent(j.image_repo)}&ref=${encodeURIComponent(j.image_digest)}`);
    if (a.report) {
      card.append(auditReport(a.report));
      return;
    }
  } catch {}
  card.append(el("ul", { class: "reasons mono" }, (j.audit || []).map((r) => el("li", {}, r))));
}

// openLogs makes a tab per task, each with a live log over a websocket.
function openLogs(section, j, onMetric) {
  section.hidden = false;
  const tabs = el("div", { class: "tabs", role: "tablist" });
  const panes = el("div");
  const follow = el("input", { type: "checkbox", id: "follow", checked: true });
  section.append(el("div", { class: "logs-head" }, el("h2", {}, t("job.logs")),
    el("label", { class: "check" }, follow, " ", t("job.follow"))), tabs, panes);
  const streams = [];
  for (let i = 0; i < j.spec.nodes; i++) {
    const pre = el("pre", { class: "log", id: `log-${i}`, dataset: { task: i } });
    const state = el("div", { class: "log-state muted small", id: `log-state-${i}` }, t("job.logs.empty"));
    const dl = el("a", { class: "button small", id: `download-log-${i}`, href: logURL(j.id, i), download: "" }, "⤓ ", t("job.downloadTask", { i }));
    const pane = el("div", { class: "pane", hidden: i !== 0 }, pre, el("div", { class: "log-foot" }, state, dl));
    const tab = el("button", { class: `tab ${i === 0 ? "active" : ""}`, role: "tab", id: `tab-${i}` }, t("job.task", { i }));
    tab.addEventListener("click", () => {
      for (const b of tabs.children) b.classList.remove("active");
      for (const p of panes.children) p.hidden = true;
      tab.classList.add("active");
      pane.hidden = false;
      if (follow.checked) pre.scrollTop = pre.scrollHeight;
    });
    pre.addEventListener("scroll", () => {
      // Scrolling up stops following; back at the end, it follows again.
      follow.checked = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    });
    tabs.append(tab);
    panes.append(pane);
    // Task 0's socket also carries the job's resource samples.
    streams.push(streamTask(j.id, i, pre, state, follow, i === 0 ? onMetric : null));
  }
  return { close: () => streams.forEach((s) => s.close()) };
}

// streamTask follows one task's log. After a lost connection it asks
// again; the server sends the whole log, so lines already shown are skipped.
function streamTask(jobID, task, pre, state, follow, onMetric) {
  let shown = 0, closed = false, ws = null, delay = 500, timer = null;
  const connect = () => {
    let received = 0;
    ws = logSocket(jobID, task, !!onMetric);
    ws.onopen = () => (delay = 500);
    ws.onmessage = (ev) => {
      const l = JSON.parse(ev.data);
      if (l.metric) {
        onMetric(l.metric);
        return;
      }
      if (l.task < 0) {
        state.textContent = l.text;
        state.classList.add("field-error");
        return;
      }
      if (++received <= shown) return;
      shown++;
      const atEnd = follow.checked;
      pre.append(el("div", { class: `line${l.stderr ? " err" : ""}` }, el("span", { class: "ts" }, new Date(l.time).toLocaleTimeString()), l.text));
      state.textContent = "";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    };
    ws.onclose = (ev) => {
      if (closed) return;
      if (ev.code === 1000) {
        state.textContent = shown ? t("job.logs.ended") : t("job.logs.empty");
        return;
      }
      state.textContent = t("job.logs.reconnecting");
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 5000);
    };
  };
  connect();
  return { close: () => { closed = true; clearTimeout(timer); if (ws) ws.close(); } };
}
