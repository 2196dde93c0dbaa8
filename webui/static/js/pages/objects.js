// The objects page: buckets and folders, upload with progress, download
// and delete.
import { t } from "../i18n.js";
import { get, post, del, upload, objectPath, prefix as apiPrefix } from "../api.js";
import { el, clear, bytes, time, notice, icon, confirmDialog } from "../util.js";

const link = (bucket, prefix = "") => `#/objects/${encodeURIComponent(bucket)}/${prefix.split("/").map(encodeURIComponent).join("/")}`;

export function render(main, [bucket, prefix = ""]) {
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  const buckets = el("ul", { class: "bucket-list", id: "bucket-list" });
  const status = el("div", { id: "objects-status" });
  const right = el("section", { class: "card flush grow", id: "objects-pane" });
  const newBucket = el("input", { id: "new-bucket", placeholder: t("objects.bucketName"), autocomplete: "off" });
  main.append(
    el("div", { class: "page-head" }, el("h1", {}, t("objects.title"))),
    status,
    el("div", { class: "split" },
      el("aside", { class: "card side" }, el("h2", {}, t("objects.buckets")), buckets,
        el("form", { class: "inline", onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            await post("/buckets", { name: newBucket.value.trim() });
            location.hash = link(newBucket.value.trim());
          } catch (e) {
            clear(status).append(notice("error", e.message));
          }
        } }, newBucket, el("button", { class: "button small", type: "submit" }, "+ ", t("objects.newBucket")))),
      right));

  get("/buckets").then((bs) => {
    if (bs.length === 0) buckets.append(el("li", { class: "muted" }, t("objects.empty")));
    for (const b of bs) buckets.append(el("li", {}, el("a", { href: link(b.name), class: b.name === bucket ? "active" : "" }, icon("bucket"), b.name)));
  }).catch((e) => clear(status).append(notice("error", e.message)));

  if (!bucket) {
    right.append(el("p", { class: "empty" }, t("objects.pickBucket")));
    return;
  }
  // Breadcrumbs: bucket / folder / folder.
  const crumbs = el("nav", { class: "crumbs", id: "crumbs" }, el("a", { href: link(bucket) }, `s3://${bucket}/`));
  let acc = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    acc += part + "/";
    crumbs.append(el("a", { href: link(bucket, acc) }, part + "/"));
  }
  const fileInput = el("input", { type: "file", id: "upload-input", multiple: true, hidden: true });
  const progress = el("div", { class: "uploads", id: "uploads" });
  const folderName = el("input", { id: "new-folder", placeholder: t("objects.folderName"), autocomplete: "off" });
  const body = el("tbody", { id: "objects-body" });
  right.append(
    el("div", { class: "toolbar" }, crumbs,
      el("div", { class: "actions" },
        el("form", { class: "inline", onsubmit: (ev) => {
          ev.preventDefault();
          const n = folderName.value.trim().replace(/^\/+|\/+$/g, "");
          if (n) location.hash = link(bucket, prefix + n + "/");
        } }, folderName, el("button", { class: "button small", type: "submit", id: "new-folder-button" }, "+ ", t("objects.newFolder"))),
        el("button", { class: "button primary small", id: "upload-button", onclick: () => fileInput.click() }, "⇪ ", t("objects.upload")),
        fileInput)),
    progress,
    el("table", { class: "table", id: "objects-table" },
      el("thead", {}, el("tr", {}, el("th", {}, t("objects.col.name")), el("th", {}, t("objects.col.size")),
        el("th", {}, t("objects.col.modified")), el("th", {}, t("objects.col.actions")))),
      body));

  async function load() {
    let l;
    try {
      l = await get(`/buckets/${encodeURIComponent(bucket)}/objects?prefix=${encodeURIComponent(prefix)}`);
    } catch (e) {
      clear(status).append(notice("error", e.message));
      return;
    }
    clear(body);
    if (l.folders.length + l.objects.length === 0) body.append(el("tr", {}, el("td", { colspan: 4, class: "empty" }, t("objects.folderEmpty"))));
    for (const f of l.folders) {
      body.append(el("tr", { dataset: { key: f } },
        el("td", {}, el("a", { href: link(bucket, f), class: "strong" }, icon("folder"), f.slice(prefix.length))),
        el("td", { class: "muted" }, t("objects.folder")), el("td", {}),
        el("td", { class: "actions" }, deleteButton(f, load))));
    }
    for (const o of l.objects) {
      const name = o.key.slice(prefix.length);
      body.append(el("tr", { dataset: { key: o.key } },
        el("td", { class: "mono" }, icon("file"), name),
        el("td", {}, bytes(o.size)),
        el("td", {}, time(o.modified)),
        el("td", { class: "actions" },
          el("a", { class: "button small", href: apiPrefix + objectPath(bucket, o.key), download: name }, "⇩ ", t("objects.download")),
          deleteButton(o.key, load))));
    }
  }

  function deleteButton(key, after) {
    return el("button", { class: "button small danger", dataset: { delete: key }, onclick: async () => {
      if (!(await confirmDialog(t("common.confirmDelete", { name: `s3://${bucket}/${key}` }), t("common.delete")))) return;
      try {
        const r = await del(objectPath(bucket, key));
        clear(status).append(notice("ok", t("objects.deleted", { n: r.deleted })));
        after();
      } catch (e) {
        clear(status).append(notice("error", e.message));
      }
    } }, t("common.delete"));
  }

  fileInput.addEventListener("change", async () => {
    for (const file of fileInput.files) {
      const bar = el("progress", { max: 100, value: 0 });
      const label = el("span", {}, t("objects.uploading", { name: file.name }));
      const pct = el("span", { class: "mono small" }, "0%");
      const row = el("div", { class: "upload", dataset: { file: file.name } }, label, bar, pct);
      progress.append(row);
      try {
        await upload(bucket, prefix + file.name, file, (done, total) => {
          bar.value = Math.round((100 * done) / total);
          pct.textContent = `${bar.value}%`;
        });
        bar.value = 100;
        pct.textContent = "100%";
        label.textContent = t("objects.uploaded", { name: file.name });
        row.classList.add("done");
      } catch (e) {
        label.textContent = e.message;
        row.classList.add("failed");
      }
      load();
    }
    fileInput.value = "";
  });
  load();
}
