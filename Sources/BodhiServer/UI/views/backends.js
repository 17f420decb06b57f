// Backends (power users read, admins change): remote servers and cloud APIs whose models Bodhi
// serves as PREFIX/model. The API key is sent once, when adding, and never shown again.

import { hasRole } from "../app.js";
import { del, get, post } from "../lib/api.js";
import { actionForm, confirmAction, field, formatTime, h, page, replace, table, toast } from "../lib/dom.js";

const formats = [
  ["openai", "OpenAI-compatible (OpenAI, llama-server, vLLM, Bodhi, Ollama /v1)"],
  ["anthropic", "Anthropic (Messages API)"],
  ["gemini", "Google Gemini"],
];
const exampleURLs = { openai: "http://10.0.0.2:8080/v1", anthropic: "https://api.anthropic.com", gemini: "https://generativelanguage.googleapis.com" };

export async function render(main, { session }) {
  const admin = hasRole(session.user, "admin");
  const listBox = h("div", { class: "table-scroll" });

  async function load() {
    try {
      const { data } = await get("/bodhi/v1/backends");
      replace(listBox, data.length === 0 ? h("p", { class: "muted" }, "No backends yet: every model runs on this machine.") :
        table("Backends", ["Name", "Format", "URL", "Models", "Key", "Status", ""], data.map((backend) => h("tr", {},
          h("th", { scope: "row" }, backend.name),
          h("td", {}, backend.format),
          h("td", {}, h("code", {}, backend.url)),
          h("td", {}, h("details", {}, h("summary", {}, `${backend.models.length} as ${backend.prefix}/…`),
            h("ul", {}, backend.models.map((model) => h("li", {}, h("code", {}, model)))))),
          h("td", {}, backend.has_api_key ? "yes" : "—"),
          h("td", {}, backend.error
            ? h("span", { class: "tag bad", title: backend.error }, "error")
            : h("span", { class: "tag ok", title: `models read ${formatTime(backend.refreshed_at)}` }, "ok"),
            backend.error ? h("div", { class: "muted small" }, backend.error) : null),
          h("td", {}, h("div", { class: "row" },
            h("button", { type: "button", class: "small", onclick: () => test(backend) }, "Test"),
            admin ? h("button", { type: "button", class: "ghost small danger-text", onclick: () => remove(backend) }, "Remove") : null))))));
    } catch (error) {
      replace(listBox, h("p", { class: "form-error" }, error.message));
    }
  }

  async function test(backend) {
    try {
      const status = await post(`/bodhi/v1/backends/${encodeURIComponent(backend.name)}/test`);
      if (status.error) toast(`${backend.name}: ${status.error}`, "error");
      else toast(`${backend.name} answers: ${status.models.length} models.`);
      load();
    } catch (error) { toast(error.message, "error"); }
  }

  async function remove(backend) {
    if (!(await confirmAction(`Remove the backend "${backend.name}"? Its models (${backend.prefix}/…) stop answering, and its key is forgotten.`, "Remove"))) return;
    try { await del(`/bodhi/v1/backends/${encodeURIComponent(backend.name)}`); toast(`Backend ${backend.name} removed.`); load(); } catch (error) { toast(error.message, "error"); }
  }

  const parts = [h("p", { class: "lead" }, "Models of other servers and cloud APIs, served beside this machine's under their prefix: ",
    h("code", {}, "prefix/model"), ". They answer every API Bodhi speaks, obey tokens' model lists and aliases, and count in the metrics.")];
  if (admin) {
    const name = h("input", { required: true, maxlength: 64, placeholder: "lab", pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]*" });
    const url = h("input", { required: true, type: "url", placeholder: exampleURLs.openai });
    const format = h("select", {}, formats.map(([value, label]) => h("option", { value }, label)));
    format.addEventListener("change", () => { url.placeholder = exampleURLs[format.value]; });
    const prefix = h("input", { maxlength: 64, placeholder: "the name" });
    const key = h("input", { type: "password", autocomplete: "off", placeholder: "optional for local servers" });
    parts.push(actionForm({ label: "Add a backend", submitLabel: "Add backend" },
      h("div", { class: "grid-fields" }, field("Name", name), field("Format", format), field("URL", url, "Its base URL."),
        field("Prefix", prefix, "What its models' names start with."), field("API key", key, "Kept encrypted; never shown again.")),
      async () => {
        const added = await post("/bodhi/v1/backends", {
          name: name.value.trim(), url: url.value.trim(), format: format.value,
          prefix: prefix.value.trim() || undefined, api_key: key.value || undefined,
        });
        key.value = "";
        toast(`Backend ${added.name} added: ${added.models.length} models as ${added.prefix}/…`);
        name.value = ""; url.value = ""; prefix.value = "";
        load();
      }));
  }
  parts.push(h("h2", {}, "Backends"), listBox);
  main.append(...page("Backends", ...parts));
  await load();
}
