// The jobs page (a list that refreshes itself) and the create-job form.
import { t } from "../i18n.js";
import { get, post } from "../api.js";
import { el, clear, badge, ago, duration, notice, poller, icon } from "../util.js";
import { folderPicker } from "./picker.js";

export function render(main) {
  const body = el("tbody", { id: "jobs-body" });
  const status = el("div", { class: "status-line" });
  main.append(
    el("div", { class: "page-head" },
      el("div", {}, el("h1", {}, t("jobs.title")), el("small", { class: "muted" }, "⟳ ", t("jobs.autorefresh"))),
      el("a", { class: "button primary", href: "#/jobs/new", id: "create-job" }, "+ ", t("jobs.create"))),
    status,
    el("div", { class: "card flush" },
      el("table", { class: "table", id: "jobs-table" },
        el("thead", {}, el("tr", {},
          el("th", {}, t("jobs.col.name")), el("th", {}, t("jobs.col.status")), el("th", {}, t("jobs.col.nodes")),
          el("th", {}, t("jobs.col.image")), el("th", {}, t("jobs.col.age")), el("th", {}, t("jobs.col.duration")))),
        body)));
  const p = poller(async () => {
    try {
      const jobs = await get("/jobs");
      clear(status);
      clear(body);
      if (jobs.length === 0) body.append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, t("jobs.empty"))));
      jobs.sort((a, b) => Date.parse(b.created) - Date.parse(a.created));
      for (const j of jobs) {
        const end = j.finished ? Date.parse(j.finished) : Date.now();
        body.append(el("tr", { dataset: { job: j.id } },
          el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(j.id)}`, class: "strong" }, j.spec.name), el("div", { class: "muted mono small" }, j.id),
            j.spec.description ? el("div", { class: "small description" }, j.spec.description) : null),
          el("td", {}, badge(j.status), j.queue_position ? el("span", { class: "muted small" }, " ", t("jobs.queue", { n: j.queue_position })) : null),
          el("td", {}, String(j.spec.nodes)),
          el("td", { class: "mono small" }, j.spec.image),
          el("td", { title: new Date(j.created).toLocaleString() }, ago(j.created)),
          el("td", {}, j.started ? duration(end - Date.parse(j.started)) : "–")));
      }
    } catch (e) {
      clear(status).append(notice("error", e.status === 0 ? t("common.unreachable") : e.message));
    }
  }, 2000);
  return () => p.stop();
}

// Flavors like the console's list; zero means no limit.
const flavors = [
  { cpus: 0, mem: 0, gpus: 0 },
  { cpus: 2, mem: 8, gpus: 0 },
  { cpus: 4, mem: 16, gpus: 0 },
  { cpus: 8, mem: 32, gpus: 0 },
  { cpus: 8, mem: 64, gpus: 1 },
];

function flavorLabel(f) {
  if (!f.cpus) return t("form.flavor.unlimited");
  return f.gpus ? t("form.flavor.gpu", { gpus: f.gpus, cpus: f.cpus, mem: f.mem }) : t("form.flavor.cpu", { cpus: f.cpus, mem: f.mem });
}

const commandTemplate = (app) => `bash /home/work/run_train.sh python /home/work/user-job-dir/${app}/train.py`;

// splitCommand splits a command line as a shell would for simple cases:
// spaces separate words; single and double quotes group them.
export function splitCommand(s) {
  const out = [];
  let cur = "", inWord = false, q = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === q) q = null;
      else if (c === "\\" && q === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

// field is a labelled input with its help and a place for its error.
function field(id, label, input, help, required) {
  return el("div", { class: "field", id: `field-${id}` },
    el("label", { for: `f-${id}` }, label, required ? el("span", { class: "req", title: t("form.required") }, " *") : null),
    input,
    help ? el("div", { class: "help" }, help) : null,
    el("div", { class: "field-error", id: `err-${id}`, role: "alert" }));
}

function objectInput(id, placeholder) {
  const input = el("input", { id: `f-${id}`, name: id, placeholder, autocomplete: "off", class: "mono" });
  const pick = el("button", { type: "button", class: "button small", id: `pick-${id}`, onclick: () => folderPicker(input.value, (url) => {
    input.value = url;
    input.dispatchEvent(new Event("input"));
  }) }, icon("folder"), t("form.pick"));
  return [input, el("div", { class: "input-row" }, input, pick)];
}

export function renderCreate(main, _params, query) {
  const [appInput, appRow] = objectInput("app_url", "s3://bucket/new/");
  const [dataInput, dataRow] = objectInput("data_url", "s3://bucket/new/data/");
  const [trainInput, trainRow] = objectInput("train_url", "s3://bucket/new/output/");
  const [logInput, logRow] = objectInput("log_url", "s3://bucket/new/logs/");
  const name = el("input", { id: "f-name", name: "name", placeholder: "mnist-train", autocomplete: "off" });
  const description = el("textarea", { id: "f-description", name: "description", rows: 2, maxlength: 512 });
  // Fields of a copied job that the form does not show, kept as they were.
  let carried = {};
  const image = el("select", { id: "f-image", name: "image" }, el("option", { value: "" }, t("form.image.choose")));
  const imageNote = el("div", { class: "image-verdict", id: "image-verdict" });
  const command = el("textarea", { id: "f-command", name: "command", rows: 2, class: "mono" }, commandTemplate("new"));
  let commandEdited = false;
  command.addEventListener("input", () => (commandEdited = true));
  appInput.addEventListener("input", () => {
    // The template follows the code dir's last folder until edited.
    const parts = appInput.value.replace(/\/+$/, "").split("/");
    if (!commandEdited && parts.length > 3) command.value = commandTemplate(parts[parts.length - 1]);
  });
  const nodes = el("input", { id: "f-nodes", name: "nodes", type: "number", min: 1, max: 64, value: 1 });
  const flavor = el("select", { id: "f-flavor", name: "flavor" }, flavors.map((f, i) => el("option", { value: i }, flavorLabel(f))));
  const policy = el("select", { id: "f-policy", name: "policy" },
    el("option", { value: "all" }, t("form.policy.all")), el("option", { value: "index0" }, t("form.policy.index0")));
  const timeout = el("input", { id: "f-timeout", name: "timeout", placeholder: "2h", autocomplete: "off" });
  const env = el("textarea", { id: "f-env", name: "env", rows: 3, class: "mono", placeholder: "EPOCHS=10" });
  const banner = el("div", { id: "form-banner" });
  const submit = el("button", { type: "submit", class: "button primary", id: "submit-job" }, t("form.submit"));

  const form = el("form", { class: "card form", id: "job-form", novalidate: true },
    el("h2", {}, t("form.section.basic")),
    field("name", t("form.name"), name, t("form.name.help"), true),
    field("description", t("form.description"), description, t("form.description.help")),
    el("h2", {}, t("form.section.algorithm")),
    field("image", t("form.image"), el("div", {}, image, imageNote), t("form.image.help"), true),
    field("app_url", t("form.appUrl"), appRow, t("form.appUrl.help"), true),
    field("command", t("form.command"), command, t("form.command.help"), true),
    el("h2", {}, t("form.section.data")),
    field("data_url", t("form.dataUrl"), dataRow, t("form.dataUrl.help")),
    field("train_url", t("form.trainUrl"), trainRow, t("form.trainUrl.help")),
    field("log_url", t("form.logUrl"), logRow, t("form.logUrl.help")),
    el("h2", {}, t("form.section.resources")),
    el("div", { class: "grid2" },
      field("nodes", t("form.nodes"), nodes, t("form.nodes.help"), true),
      field("flavor", t("form.flavor"), flavor),
      field("policy", t("form.policy"), policy),
      field("timeout", t("form.timeout"), timeout, t("form.timeout.help"))),
    field("env", t("form.env"), env, t("form.env.help")),
    el("div", { class: "actions" }, submit, el("a", { class: "button", href: "#/jobs" }, t("common.cancel"))));

  main.append(
    el("div", { class: "page-head" }, el("div", {}, el("a", { href: "#/jobs", class: "muted" }, "← ", t("job.back")), el("h1", {}, t("form.title")))),
    query && query.get("copy") ? el("div", { class: "notice info", id: "copy-note" }, t("form.copyOf", { id: query.get("copy") })) : "",
    el("p", { class: "muted" }, t("form.intro")),
    banner, form);

  // Images, with their audit verdicts, from the registry.
  const verdicts = {};
  const imagesLoaded = get("/images").then(async (imgs) => {
    const tagged = imgs.filter((i) => i.tag);
    if (tagged.length === 0) imageNote.append(el("span", { class: "muted" }, t("form.image.none")));
    for (const i of tagged) {
      const ref = `${i.repository}:${i.tag}`;
      const opt = el("option", { value: ref }, ref);
      image.append(opt);
      get(`/images/audit?repo=${encodeURIComponent(i.repository)}&ref=${encodeURIComponent(i.tag)}`).then((a) => {
        verdicts[ref] = a.is_base ? "base" : a.verdict || "none";
        if (!a.is_base) opt.textContent = `${ref} — ${t(`form.verdict.${verdicts[ref]}`)}`;
        showVerdict();
      }).catch(() => {});
    }
  }).catch((e) => imageNote.append(el("span", { class: "field-error" }, e.message)));
  const showVerdict = () => {
    clear(imageNote);
    const v = verdicts[image.value];
    if (!image.value || !v) return;
    if (v === "base") imageNote.append(el("span", { class: "badge gray" }, t("images.isBase")));
    else imageNote.append(el("span", { class: `badge ${{ pass: "green", fail: "red", none: "gray" }[v]}` }, el("span", { class: "dot" }), t(`form.verdict.${v}`)));
  };
  image.addEventListener("change", showVerdict);

  // Editing a field clears the error it was marked with.
  const clearField = (ev) => {
    const box = ev.target.closest(".field");
    if (!box || !box.classList.contains("invalid")) return;
    box.classList.remove("invalid");
    box.querySelector(".field-error").textContent = "";
    if (!form.querySelector(".field.invalid")) clear(banner);
  };
  form.addEventListener("input", clearField);
  form.addEventListener("change", clearField);

  // Copy: fill the form from an earlier job, its name suffixed.
  if (query && query.get("copy")) {
    get(`/jobs/${encodeURIComponent(query.get("copy"))}`).then(async (j) => {
      const sp = j.spec;
      name.value = `${sp.name.slice(0, 59)}-copy`;
      description.value = sp.description || "";
      command.value = joinCommand(sp.command || []);
      commandEdited = true;
      appInput.value = sp.app_url || "";
      dataInput.value = sp.data_url || "";
      trainInput.value = sp.train_url || "";
      logInput.value = sp.log_url || "";
      nodes.value = sp.nodes;
      policy.value = sp.policy || "all";
      timeout.value = sp.timeout && sp.timeout !== "0s" ? sp.timeout : "";
      env.value = Object.entries(sp.env || {}).map(([k, v]) => `${k}=${v}`).join("\n");
      const fl = sp.flavor || {};
      const gib = (fl.memory || 0) / (1 << 30);
      const k = flavors.findIndex((f) => (f.cpus || 0) === (fl.cpus || 0) && f.mem === gib && (f.gpus || 0) === (fl.gpus || 0));
      if (k >= 0) flavor.value = String(k);
      else {
        carried.flavor = { cpus: fl.cpus || undefined, memory: fl.memory || undefined, gpus: fl.gpus || undefined };
        flavor.append(el("option", { value: "copied" }, t("form.flavor.copied", { cpus: fl.cpus || "–", mem: gib ? `${+gib.toFixed(2)}g` : "–", gpus: fl.gpus || 0 })));
        flavor.value = "copied";
      }
      carried.rest = { retries: sp.retries || undefined, port: sp.port || undefined, keep: sp.keep || undefined };
      await imagesLoaded;
      if (![...image.options].some((o) => o.value === sp.image)) image.append(el("option", { value: sp.image }, sp.image));
      image.value = sp.image;
      showVerdict();
    }).catch((e) => banner.append(notice("error", e.message)));
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
    for (const e of form.querySelectorAll(".field.invalid")) e.classList.remove("invalid");
    clear(banner);
    const f = flavor.value === "copied" ? carried.flavor : flavors[Number(flavor.value)];
    const spec = {
      ...carried.rest,
      name: name.value.trim(),
      description: description.value.trim() || undefined,
      image: image.value,
      command: splitCommand(command.value.trim()),
      nodes: Number(nodes.value) || 0,
      app_url: appInput.value.trim(),
      data_url: dataInput.value.trim() || undefined,
      train_url: trainInput.value.trim() || undefined,
      log_url: logInput.value.trim() || undefined,
      flavor: flavor.value === "copied" ? f : f.cpus ? { cpus: f.cpus, memory: `${f.mem}g`, gpus: f.gpus || undefined } : {},
      policy: policy.value,
      timeout: timeout.value.trim() || undefined,
    };
    const envLines = env.value.split("\n").map((l) => l.trim()).filter(Boolean);
    if (envLines.length) {
      spec.env = {};
      for (const l of envLines) {
        const i = l.indexOf("=");
        if (i < 0) spec.env[l] = "";
        else spec.env[l.slice(0, i).trim()] = l.slice(i + 1);
      }
    }
    submit.disabled = true;
    submit.textContent = t("form.submitting");
    try {
      const j = await post("/jobs", spec);
      location.hash = `#/jobs/${encodeURIComponent(j.id)}`;
    } catch (e) {
      submit.disabled = false;
      submit.textContent = t("form.submit");
      showFieldError(form, banner, e);
    }
  });
}

// joinCommand writes a command's words back as one line that
// splitCommand reads back the same: words with spaces or quotes are quoted.
export function joinCommand(words) {
  return words.map((w) => (w !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'"'"'`)}'`)).join(" ");
}

// The API names the field first: "nodes: must be between 1 and 64".
const fieldOf = { name: "name", description: "description", image: "image", command: "command", nodes: "nodes", app_url: "app_url", data_url: "data_url",
  train_url: "train_url", log_url: "log_url", env: "env", flavor: "flavor", "flavor.memory": "flavor", timeout: "timeout", policy: "policy" };

function showFieldError(form, banner, e) {
  const m = /^(?:invalid request: )?(?:job spec: )?([a-z_.]+): (.*)$/s.exec(e.message || "");
  const id = m && fieldOf[m[1]];
  banner.append(notice("error", id ? t("form.invalid") : e.message));
  if (!id) return;
  const box = form.querySelector(`#field-${id}`);
  box.classList.add("invalid");
  form.querySelector(`#err-${id}`).textContent = m[2];
  box.scrollIntoView({ block: "center" });
  box.querySelector("input, select, textarea")?.focus();
}
