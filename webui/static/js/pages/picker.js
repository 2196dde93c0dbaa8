// A folder picker over the object store, for the form's s3:// fields.
import { t } from "../i18n.js";
import { get } from "../api.js";
import { el, clear, icon } from "../util.js";

function parse(url) {
  const m = /^(?:s3|obs):\/\/([^/]+)\/?(.*)$/.exec(url || "");
  if (!m) return { bucket: "", prefix: "" };
  let prefix = m[2];
  if (prefix && !prefix.endsWith("/")) prefix = prefix.slice(0, prefix.lastIndexOf("/") + 1);
  return { bucket: m[1], prefix };
}

export function folderPicker(initial, onPick) {
  let { bucket, prefix } = parse(initial);
  const list = el("ul", { class: "picker-list", id: "picker-list" });
  const where = el("div", { class: "mono picker-where" });
  const choose = el("button", { type: "button", class: "button primary", id: "picker-choose" }, t("objects.choose"));
  const dialog = el("dialog", { class: "picker", id: "picker" },
    el("h2", {}, t("form.pick")), where, list,
    el("div", { class: "actions" }, choose, el("button", { type: "button", class: "button", onclick: () => dialog.close() }, t("common.cancel"))));
  dialog.addEventListener("close", () => dialog.remove());
  choose.addEventListener("click", () => {
    if (bucket) onPick(`s3://${bucket}/${prefix}`);
    dialog.close();
  });
  const item = (label, fn, data) => el("li", {}, el("button", { type: "button", class: "link", dataset: data, onclick: fn }, label));
  async function show() {
    clear(list);
    where.textContent = bucket ? `s3://${bucket}/${prefix}` : t("objects.pickBucket");
    choose.disabled = !bucket;
    try {
      if (!bucket) {
        for (const b of await get("/buckets")) list.append(item([icon("bucket"), b.name], () => { bucket = b.name; prefix = ""; show(); }, { bucket: b.name }));
        return;
      }
      list.append(item("↑ ..", () => {
        if (!prefix) bucket = "";
        else prefix = prefix.slice(0, prefix.slice(0, -1).lastIndexOf("/") + 1);
        show();
      }));
      const l = await get(`/buckets/${encodeURIComponent(bucket)}/objects?prefix=${encodeURIComponent(prefix)}`);
      for (const f of l.folders) list.append(item([icon("folder"), f.slice(prefix.length)], () => { prefix = f; show(); }, { folder: f }));
    } catch (e) {
      list.append(el("li", { class: "field-error" }, e.message));
    }
  }
  document.body.append(dialog);
  dialog.showModal();
  show();
}
