// The notice a signed-out browser sees: how to get a login link.
import { t } from "../i18n.js";
import { el } from "../util.js";

export function render(main, _params, query) {
  main.append(el("section", { class: "card narrow", id: "signin" },
    el("h1", {}, t("signin.title")),
    query.get("expired") ? el("div", { class: "notice error" }, t("signin.expired")) : null,
    query.get("signedout") ? el("div", { class: "notice", id: "signed-out" }, t("signin.signedOut")) : null,
    el("p", {}, t("signin.body")),
    el("pre", { class: "cmd" }, "malocal ui"),
    el("p", {}, t("signin.after"))));
}
