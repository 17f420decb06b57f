// Models: what is on disk and loaded, pulls from Hugging Face with live progress, and aliases.

import { hasRole } from "../app.js";
import { APIError, del, get, post, put, segment } from "../lib/api.js";
import { actionForm, confirmAction, field, formatBytes, h, page, replace, table, toast } from "../lib/dom.js";

export async function render(main, { session }) {
  const canChange = hasRole(session.user, "power_user");
  const sources = new Set();
  const modelsTable = h("div", { class: "table-scroll" });
  const pullsBox = h("div", { class: "pulls", "aria-live": "polite" });
  const aliasesBox = h("div", { class: "table-scroll" });
  let models = [];

  async function loadModels() {
    try {
      const [described, engines] = await Promise.all([
        get("/bodhi/v1/models?page_size=500"),
        get("/bodhi/v1/engines").catch(() => ({ engines: [] })),
      ]);
      models = described.data;
      const loaded = new Map(engines.engines.map((engine) => [engine.model, engine]));
      replace(modelsTable, models.length === 0 ? h("p", { class: "muted" }, "No models yet. Pull one below.") : table("Models on this machine", ["Model", "Size", "Quant", "Context", "Capabilities", "State", ""],
        models.map((model) => {
          const engine = loaded.get(model.id);
          return h("tr", {},
            h("td", {}, h("code", {}, model.id), model.aliases.length ? h("div", { class: "muted small" }, `aliases: ${model.aliases.join(", ")}`) : null),
            h("td", {}, formatBytes(model.size_bytes)),
            h("td", {}, model.quantization ?? "—"),
            h("td", {}, model.gguf?.context_length?.toLocaleString() ?? "—"),
            h("td", {}, capabilitiesOf(model).map((capability) => h("span", { class: "tag" }, capability))),
            h("td", {}, engine ? h("span", { class: "tag ok" }, engine.state) : h("span", { class: "muted" }, "not loaded")),
            h("td", {}, canChange ? h("button", { type: "button", class: "ghost small danger-text", onclick: () => removeModel(model.id, Boolean(engine)) }, "Delete") : null));
        })));
    } catch (error) {
      replace(modelsTable, h("p", { class: "form-error" }, error.message));
    }
  }

  /** What a model can do: chat when it has a chat template, then what its header shows beyond that. */
  function capabilitiesOf(model) {
    if (model.header_error) return ["unreadable header"];
    const base = model.gguf?.chat_template ? ["chat"] : model.capabilities.includes("embedding") ? [] : ["completion"];
    return [...base, ...model.capabilities];
  }

  async function removeModel(id, isLoaded) {
    if (!(await confirmAction(`Delete ${id} from disk?${isLoaded ? " It is loaded and will be stopped." : ""}`))) return;
    try {
      await del(`/bodhi/v1/models/${segment(id)}${isLoaded ? "?force=true" : ""}`);
      toast(`${id} deleted.`);
      loadModels();
    } catch (error) { toast(error.message, "error"); }
  }

  // --- pulls ---
  // Each pull's view is built once and updated in place, so its buttons stay put under the
  // pointer while progress events arrive every 100 ms.
  const pullViews = new Map();
  function pullView(record) {
    let view = pullViews.get(record.id);
    if (!view) {
      view = {
        progress: h("progress", { max: 1, value: 0, "aria-label": `Progress of ${record.reference}` }),
        state: h("span", { class: "pull-state" }),
        bytes: h("small", { class: "muted" }),
        error: h("p", { class: "form-error", hidden: true }),
        actions: h("div", { class: "row" }),
        shown: null,
      };
      view.root = h("div", { class: "pull", dataset: { pull: record.id } },
        h("div", { class: "row spread" }, h("strong", {}, record.reference), view.state),
        view.progress, view.bytes, view.error, view.actions);
      pullViews.set(record.id, view);
      pullsBox.prepend(view.root);
    }
    const finished = ["completed", "failed", "cancelled"].includes(record.state);
    const percent = record.total_bytes ? Math.floor((record.completed_bytes / record.total_bytes) * 100) : 0;
    view.root.className = `pull ${record.state}`;
    view.progress.max = record.total_bytes || 1;
    view.progress.value = record.completed_bytes;
    view.state.textContent = `${record.state} · ${percent}%`;
    view.bytes.textContent = `${formatBytes(record.completed_bytes)} of ${formatBytes(record.total_bytes)}`;
    view.error.textContent = record.error ?? "";
    view.error.hidden = !record.error;
    if (view.shown === record.state) return;
    view.shown = record.state;
    const actions = [];
    if (!finished) actions.push(h("button", { type: "button", class: "ghost small", onclick: () => post(`/bodhi/v1/models/pull/${record.id}/cancel`).catch((e) => toast(e.message, "error")) }, "Cancel"));
    if (record.state === "failed" || record.state === "cancelled") actions.push(h("button", { type: "button", class: "ghost small", onclick: () => retry(record.id) }, "Retry"));
    if (finished) actions.push(h("button", { type: "button", class: "ghost small", onclick: () => { view.root.remove(); pullViews.delete(record.id); } }, "Dismiss"));
    replace(view.actions, actions);
  }

  function follow(id) {
    const source = new EventSource(`/bodhi/v1/models/pull/${segment(id)}/events`);
    sources.add(source);
    source.onmessage = (event) => {
      const record = JSON.parse(event.data);
      pullView(record);
      if (["completed", "failed", "cancelled"].includes(record.state)) {
        source.close();
        sources.delete(source);
        if (record.state === "completed") { toast(`${record.model} is ready.`); loadModels(); }
      }
    };
    source.onerror = () => { source.close(); sources.delete(source); };
  }

  async function retry(id) {
    try { pullView(await post(`/bodhi/v1/models/pull/${id}/retry`)); follow(id); } catch (error) { toast(error.message, "error"); }
  }

  const pullInput = h("input", { name: "model", required: true, placeholder: "owner/repo:Q4_K_M", autocomplete: "off", spellcheck: "false" });
  const pullForm = actionForm({ label: "Pull a model", submitLabel: "Pull" },
    field("Hugging Face model", pullInput, "A GGUF repository, optionally with a quantization: bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"),
    async () => {
      const record = await post("/bodhi/v1/models/pull", { model: pullInput.value.trim() });
      pullView(record);
      follow(record.id);
      pullInput.value = "";
    });

  // --- aliases ---
  async function loadAliases() {
    try {
      const { data } = await get("/bodhi/v1/aliases");
      replace(aliasesBox, data.length === 0 ? h("p", { class: "muted" }, "No aliases yet.") : table("Aliases", ["Alias", "Model", "Defaults", ""],
        data.map((alias) => h("tr", {},
          h("td", {}, h("code", {}, alias.name)),
          h("td", {}, h("code", {}, alias.model)),
          h("td", {}, describeDefaults(alias.defaults)),
          h("td", {}, canChange ? h("div", { class: "row" },
            h("button", { type: "button", class: "ghost small", onclick: () => aliasForm(alias) }, "Edit"),
            h("button", { type: "button", class: "ghost small danger-text", onclick: () => removeAlias(alias.name) }, "Delete")) : null)))));
    } catch (error) {
      replace(aliasesBox, h("p", { class: "form-error" }, error.message));
    }
  }

  function describeDefaults(defaults = {}) {
    const parts = Object.entries(defaults).filter(([, value]) => value !== null && value !== undefined)
      .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(", ") : value}`);
    return parts.length ? parts.join("; ") : h("span", { class: "muted" }, "none");
  }

  async function removeAlias(name) {
    if (!(await confirmAction(`Delete the alias ${name}? The model stays.`))) return;
    try { await del(`/bodhi/v1/aliases/${segment(name)}`); toast(`Alias ${name} deleted.`); loadAliases(); loadModels(); } catch (error) { toast(error.message, "error"); }
  }

  const aliasBox = h("div");
  function aliasForm(alias = null) {
    const name = h("input", { required: true, value: alias?.name ?? "", disabled: Boolean(alias) });
    const model = h("select", { required: true }, models.map((entry) => h("option", { value: entry.id, selected: entry.id === alias?.model }, entry.id)));
    const system = h("textarea", { rows: 2 });
    system.value = alias?.defaults?.system ?? "";
    const temperature = h("input", { type: "number", step: "0.05", min: 0, max: 2, value: alias?.defaults?.temperature ?? "" });
    const form = actionForm({
      label: alias ? `Edit alias ${alias.name}` : "New alias", submitLabel: alias ? "Save" : "Create",
      buttons: h("button", { type: "button", class: "ghost", onclick: () => replace(aliasBox) }, "Cancel"),
    }, [
      h("h3", {}, alias ? `Edit ${alias.name}` : "New alias"),
      field("Name", name), field("Model", model), field("System prompt", system), field("Temperature", temperature),
    ], async () => {
      const defaults = { ...(alias?.defaults ?? {}) };
      if (system.value.trim()) defaults.system = system.value; else delete defaults.system;
      if (temperature.value !== "") defaults.temperature = parseFloat(temperature.value); else delete defaults.temperature;
      const body = { model: model.value, defaults, engine: alias?.engine };
      if (alias) await put(`/bodhi/v1/aliases/${segment(alias.name)}`, body);
      else await post("/bodhi/v1/aliases", { name: name.value.trim(), ...body });
      toast(alias ? `Alias ${alias.name} saved.` : `Alias ${name.value.trim()} created.`);
      replace(aliasBox);
      loadAliases();
      loadModels();
    });
    replace(aliasBox, form);
    (alias ? model : name).focus();
  }

  main.append(...page("Models",
    modelsTable,
    canChange ? [h("h2", {}, "Pull a model"), pullForm] : null,
    pullsBox,
    h("div", { class: "row spread" }, h("h2", {}, "Aliases"),
      canChange ? h("button", { type: "button", class: "small", onclick: () => aliasForm() }, "+ New alias") : null),
    aliasBox, aliasesBox));
  await loadModels();
  loadAliases();
  if (canChange) {
    try {
      const { data } = await get("/bodhi/v1/models/pull");
      for (const record of data.filter((item) => !["completed", "failed", "cancelled"].includes(item.state))) {
        pullView(record);
        follow(record.id);
      }
    } catch (error) {
      if (!(error instanceof APIError) || error.status !== 403) toast(error.message, "error");
    }
  }
  return () => { for (const source of sources) source.close(); };
}
