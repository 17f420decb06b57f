// API tokens for the signed-in user: create (shown once), list, revoke.

import { hasRole } from "../app.js";
import { del, get, post } from "../lib/api.js";
import { actionForm, confirmAction, copyText, field, formatTime, h, page, replace, table, toast } from "../lib/dom.js";

const scopes = ["user", "power_user", "manager", "admin"];

export async function render(main, { session }) {
  const listBox = h("div", { class: "table-scroll" });
  const created = h("div", { "aria-live": "polite" });

  async function load() {
    try {
      const { data } = await get("/bodhi/v1/tokens");
      replace(listBox, data.length === 0 ? h("p", { class: "muted" }, "No tokens yet.") : table("Your API tokens", ["Name", "Prefix", "Scope", "Created", "Last used", "Expires", "Status", ""],
        data.map((token) => {
          const expired = token.expires_at && token.expires_at * 1000 < Date.now();
          const status = token.revoked_at ? "revoked" : expired ? "expired" : "active";
          return h("tr", {},
            h("td", {}, token.name), h("td", {}, h("code", {}, token.prefix)), h("td", {}, token.scope),
            h("td", {}, formatTime(token.created_at)), h("td", {}, formatTime(token.last_used_at)),
            h("td", {}, token.expires_at ? formatTime(token.expires_at) : "never"),
            h("td", {}, h("span", { class: `tag ${status === "active" ? "ok" : ""}` }, status)),
            h("td", {}, status === "active" ? h("button", { type: "button", class: "ghost small danger-text", onclick: () => revoke(token) }, "Revoke") : null));
        })));
    } catch (error) {
      replace(listBox, h("p", { class: "form-error" }, error.message));
    }
  }

  async function revoke(token) {
    if (!(await confirmAction(`Revoke the token "${token.name}"? Clients using it stop working at once.`, "Revoke"))) return;
    try { await del(`/bodhi/v1/tokens/${token.id}`); toast(`Token ${token.name} revoked.`); load(); } catch (error) { toast(error.message, "error"); }
  }

  const name = h("input", { required: true, maxlength: 100, placeholder: "my-app" });
  const scope = h("select", {}, scopes.filter((role) => hasRole(session.user, role)).map((role) => h("option", { value: role }, role)));
  const expiry = h("select", {},
    h("option", { value: "" }, "never"), h("option", { value: "7d" }, "7 days"), h("option", { value: "30d", selected: true }, "30 days"),
    h("option", { value: "90d" }, "90 days"), h("option", { value: "365d" }, "1 year"));
  const form = actionForm({ label: "Create a token", submitLabel: "Create token" },
    h("div", { class: "grid-fields" }, field("Name", name), field("Scope", scope, "The most this token may do; never more than your role."), field("Expires", expiry)),
    async () => {
      const token = await post("/bodhi/v1/tokens", { name: name.value.trim(), scope: scope.value, expires_in: expiry.value || undefined });
      const value = h("input", { class: "token-value", readonly: true, value: token.token, "aria-label": "The new token" });
      replace(created, h("div", { class: "panel success", role: "alert" },
        h("p", {}, h("strong", {}, "Copy this token now: it is shown only once.")),
        h("div", { class: "row" }, value,
          h("button", { type: "button", class: "primary", onclick: () => copyText(token.token, "Token copied") }, "Copy")),
        h("p", { class: "muted small" }, "Use it as the API key of any OpenAI or Ollama client, with the base URL ", h("code", {}, `${location.origin}/v1`), ".")));
      value.select();
      name.value = "";
      load();
    });

  main.append(...page("API tokens",
    h("p", { class: "lead" }, "Tokens let programs use Bodhi as you, with at most the scope you give them."),
    form, created, h("h2", {}, "Your tokens"), listBox));
  await load();
}
