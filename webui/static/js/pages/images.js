// The images page: repositories and tags of the registry, with digest,
// size, the official base each is built on, and the audit verdict and
// report, with a re-audit button.
import { t } from "../i18n.js";
import { get, post } from "../api.js";
import { el, clear, bytes, shortDigest, verdictBadge, notice } from "../util.js";

export function render(main) {
  const intro = el("p", { class: "muted", id: "images-intro" });
  const body = el("tbody", { id: "images-body" });
  const status = el("div");
  main.append(
    el("div", { class: "page-head" }, el("h1", {}, t("images.title")),
      el("button", { class: "button", onclick: () => load() }, "⟳ ", t("common.refresh"))),
    intro, status,
    el("div", { class: "card flush" }, el("table", { class: "table", id: "images-table" },
      el("thead", {}, el("tr", {}, ["repo", "tag", "digest", "size", "base", "verdict", "actions"].map((c) => el("th", {}, t(`images.col.${c}`))))),
      body)));
  get("/status").then((s) => {
    const reg = s.services.find((x) => x.name === "registry");
    intro.textContent = t("images.intro", { registry: reg ? reg.address.replace(/^127\.0\.0\.1/, "localhost") : "REGISTRY" });
  }).catch(() => {});
  async function load() {
    let imgs;
    try {
      imgs = await get("/images");
      clear(status);
    } catch (e) {
      clear(status).append(notice("error", e.message));
      return;
    }
    clear(body);
    const tagged = imgs.filter((i) => i.tag);
    if (tagged.length === 0) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, t("images.empty"))));
    tagged.sort((a, b) => (a.repository + a.tag).localeCompare(b.repository + b.tag));
    let prevRepo = "";
    for (const i of tagged) {
      const row = imageRow(i, i.repository !== prevRepo);
      prevRepo = i.repository;
      body.append(row.tr, row.detail);
    }
  }
  load();
}

function imageRow(img, firstOfRepo) {
  const ref = `${img.repository}:${img.tag}`;
  const base = el("td", { class: "small" });
  const verdict = el("td", {});
  const reportBtn = el("button", { class: "button small", hidden: true }, t("images.report"));
  const reaudit = el("button", { class: "button small", dataset: { ref } }, "↻ ", t("images.reaudit"));
  const tr = el("tr", { dataset: { image: ref } },
    el("td", { class: firstOfRepo ? "strong" : "muted" }, img.repository),
    el("td", { class: "mono" }, img.tag),
    el("td", { class: "mono small", title: img.digest }, shortDigest(img.digest)),
    el("td", {}, bytes(img.size)),
    base, verdict,
    el("td", { class: "actions" }, reportBtn, reaudit));
  const detailCell = el("td", { colspan: 7 });
  const detail = el("tr", { class: "detail", hidden: true, dataset: { report: ref } }, detailCell);
  reportBtn.addEventListener("click", () => {
    detail.hidden = !detail.hidden;
    reportBtn.textContent = detail.hidden ? t("images.report") : t("images.hide");
  });
  const show = (a) => {
    clear(base);
    if (a.is_base) base.append(el("span", { class: "badge blue" }, t("images.isBase")));
    else if (a.base) {
      base.append(el("span", { class: "mono" }, `${a.base.name}${a.base.tag ? ":" + a.base.tag : ""}`));
      if (a.base.superseded) base.append(" ", el("span", { class: "badge orange" }, t("images.superseded")));
    } else base.append(el("span", { class: "muted" }, t("images.noBase")));
    clear(verdict).append(verdictBadge(a.verdict));
    // "approved <time>; its base has since been superseded": it stays approved.
    if (a.note) verdict.append(" ", el("span", { class: "muted small", dataset: { note: "audit" } }, a.note));
    clear(detailCell);
    if (a.report) {
      detailCell.append(auditReport(a.report));
      reportBtn.hidden = false;
    }
  };
  const q = `repo=${encodeURIComponent(img.repository)}&ref=${encodeURIComponent(img.tag)}`;
  get(`/images/audit?${q}`).then(show).catch((e) => verdict.append(el("span", { class: "field-error" }, e.message)));
  reaudit.addEventListener("click", async () => {
    reaudit.disabled = true;
    reaudit.textContent = t("images.auditing");
    try {
      const a = await post(`/images/audit?${q}`);
      show(a);
      detail.hidden = false;
      reportBtn.textContent = t("images.hide");
    } catch (e) {
      clear(verdict).append(el("span", { class: "field-error" }, e.message));
    } finally {
      reaudit.disabled = false;
      reaudit.textContent = `↻ ${t("images.reaudit")}`;
    }
  });
  return { tr, detail };
}

// auditReport shows a report: verdict, base, each violation with rule,
// layer and path, and the audit log.
export function auditReport(r) {
  const vs = r.violations || [];
  const base = r.base ? `${r.base.name}${r.base.tag ? ":" + r.base.tag : ""}${r.base.superseded ? " (" + t("images.superseded") + ")" : ""}` : t("images.noBase");
  return el("div", { class: "report", dataset: { verdict: r.verdict } },
    el("div", { class: "report-head" }, verdictBadge(r.verdict),
      el("span", {}, `${t("audit.base")}: `, el("span", { class: "mono" }, base)),
      el("span", { class: "muted" }, `${t("audit.layers", { n: r.layers })} · ${bytes(r.size)}`),
      r.cached ? el("span", { class: "muted" }, t("audit.cached")) : null),
    vs.length === 0 ? el("p", { class: "muted" }, t("audit.noViolations")) : [
      el("h3", {}, t("audit.violations", { n: vs.length })),
      el("table", { class: "table violations" },
        el("thead", {}, el("tr", {}, el("th", {}, t("audit.rule")), el("th", {}, t("audit.layer")), el("th", {}, t("audit.path")), el("th", {}, t("audit.detail")))),
        el("tbody", {}, vs.map((v) => el("tr", {},
          el("td", { class: "mono strong" }, v.rule),
          el("td", { class: "mono small", title: v.layer || "" }, v.layer_index >= 0 ? `${v.layer_index} ${shortDigest(v.layer)}` : t("audit.image")),
          el("td", { class: "mono" }, v.path || "–"),
          el("td", {}, v.detail)))))],
    r.log && r.log.length ? el("details", {}, el("summary", {}, t("audit.log")), el("pre", { class: "log small" }, r.log.join("\n"))) : null);
}
