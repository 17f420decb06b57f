// Chat: conversations kept on the server, replies streamed from /v1/chat/completions.

import { navigate } from "../app.js";
import { del, get, patch, post, readEvents, request } from "../lib/api.js";
import { confirmAction, copyText, field, h, replace, toast } from "../lib/dom.js";
import { renderMarkdown } from "../lib/markdown.js";

const samplingFields = [
  { key: "temperature", label: "Temperature", step: "0.05", min: 0, max: 2 },
  { key: "top_p", label: "Top P", step: "0.05", min: 0, max: 1 },
  { key: "top_k", label: "Top K", step: "1", min: 0, integer: true },
  { key: "min_p", label: "Min P", step: "0.01", min: 0, max: 1 },
  { key: "max_tokens", label: "Max tokens", step: "1", min: 1, integer: true },
  { key: "seed", label: "Seed", step: "1", integer: true },
];

export async function render(main, { params }) {
  const state = {
    chat: null, messages: [], models: [], controller: null, cursor: null, search: "",
    settings: {}, systemPrompt: "", model: localStorage.getItem("bodhi-model") ?? "",
  };

  // Conversations list.
  const searchBox = h("input", { type: "search", placeholder: "Search chats", "aria-label": "Search chats" });
  const list = h("ul", { class: "chat-list", "aria-label": "Conversations" });
  const more = h("button", { type: "button", class: "ghost small", hidden: true }, "Load more");
  const sidebar = h("aside", { class: "chat-sidebar", id: "chat-sidebar", "aria-label": "Chats" },
    h("a", { class: "button primary", href: "/ui/chat" }, "+ New chat"), searchBox, list, more);

  // The conversation.
  const title = h("h1", { class: "chat-title" }, "New chat");
  const modelSelect = h("select", { id: "chat-model", "aria-label": "Model" });
  const renameButton = h("button", { type: "button", class: "ghost small" }, "Rename");
  const deleteButton = h("button", { type: "button", class: "ghost small danger-text" }, "Delete");
  // On a phone the list of chats folds away behind this button.
  const listButton = h("button", { type: "button", class: "ghost small chats-toggle", "aria-expanded": "false", "aria-controls": "chat-sidebar" }, "Chats");
  const settingsButton = h("button", { type: "button", class: "ghost small", "aria-expanded": "false", "aria-controls": "chat-settings" }, "Settings");
  const log = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages" });
  const prompt = h("textarea", { id: "prompt", rows: 3, placeholder: "Send a message (Enter sends, Shift+Enter starts a new line)", "aria-label": "Message" });
  const sendButton = h("button", { type: "submit", class: "primary", id: "send" }, "Send");
  const composer = h("form", { class: "composer", "aria-label": "Write a message" }, prompt, sendButton);

  const systemPrompt = h("textarea", { rows: 3, placeholder: "You are a helpful assistant." });
  const inputs = Object.fromEntries(samplingFields.map((spec) =>
    [spec.key, h("input", { type: "number", step: spec.step, min: spec.min ?? null, max: spec.max ?? null, placeholder: "default" })]));
  const saveSettings = h("button", { type: "submit", class: "small" }, "Save settings");
  const settingsPanel = h("form", { id: "chat-settings", class: "chat-settings", hidden: true, "aria-label": "Chat settings" },
    field("System prompt", systemPrompt),
    h("div", { class: "grid-fields" }, samplingFields.map((spec) => field(spec.label, inputs[spec.key]))),
    saveSettings);

  const pane = h("section", { class: "chat-pane" },
    h("div", { class: "chat-head" }, h("div", { class: "row" }, listButton, title), h("div", { class: "row" }, modelSelect, settingsButton, renameButton, deleteButton)),
    settingsPanel, log, composer);
  const layout = h("div", { class: "chat-layout" }, sidebar, pane);
  main.append(layout);
  listButton.addEventListener("click", () => {
    const open = layout.classList.toggle("list-open");
    listButton.setAttribute("aria-expanded", String(open));
  });

  // --- the list of chats ---
  // Only the latest request may fill the list, so a slow earlier search never overwrites a newer one.
  let listRequest = 0;
  async function loadList(reset = true) {
    const ticket = ++listRequest;
    if (reset) state.cursor = null;
    // encodeURIComponent, not URLSearchParams: a space must arrive as %20, not as "+".
    let query = "limit=30";
    if (state.search) query += `&q=${encodeURIComponent(state.search)}`;
    if (state.cursor) query += `&cursor=${encodeURIComponent(state.cursor)}`;
    try {
      const pageOfChats = await get(`/bodhi/v1/chats?${query}`);
      if (ticket !== listRequest) return;
      const items = pageOfChats.data.map((chat) => h("li", {},
        h("a", { href: `/ui/chat/${chat.id}`, "aria-current": chat.id === state.chat?.id ? "page" : null },
          h("span", { class: "chat-name" }, chat.title || "New chat"),
          h("small", {}, new Date(chat.updated_at * 1000).toLocaleDateString()))));
      if (reset) replace(list, items); else list.append(...items);
      if (reset && items.length === 0) list.append(h("li", { class: "muted" }, state.search ? "No chat matches." : "No chats yet."));
      state.cursor = pageOfChats.next_cursor;
      more.hidden = !pageOfChats.has_more;
    } catch (error) {
      replace(list, h("li", { class: "form-error" }, error.message));
    }
  }
  let searchTimer;
  searchBox.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.search = searchBox.value.trim(); loadList(); }, 250);
  });
  more.addEventListener("click", () => loadList(false));

  // --- models ---
  try {
    state.models = (await get("/v1/models")).data.map((model) => model.id).sort();
  } catch (error) {
    toast(error.message, "error");
  }
  function fillModels() {
    const chosen = state.chat?.model ?? state.model;
    if (!state.models.includes(chosen) && state.models.length) state.model = state.models[0];
    else state.model = chosen;
    replace(modelSelect, state.models.length
      ? state.models.map((id) => h("option", { value: id, selected: id === state.model }, id))
      : h("option", { value: "" }, "No models: pull one on the Models page"));
  }
  modelSelect.addEventListener("change", async () => {
    state.model = modelSelect.value;
    localStorage.setItem("bodhi-model", state.model);
    if (state.chat) state.chat = await patch(`/bodhi/v1/chats/${state.chat.id}`, { model: state.model }).catch(report) ?? state.chat;
  });

  // --- settings ---
  function fillSettings() {
    systemPrompt.value = state.systemPrompt ?? "";
    for (const spec of samplingFields) inputs[spec.key].value = state.settings[spec.key] ?? "";
  }
  settingsButton.addEventListener("click", () => {
    settingsPanel.hidden = !settingsPanel.hidden;
    settingsButton.setAttribute("aria-expanded", String(!settingsPanel.hidden));
  });
  settingsPanel.addEventListener("submit", async (event) => {
    event.preventDefault();
    const settings = {};
    for (const spec of samplingFields) {
      const text = inputs[spec.key].value.trim();
      if (text !== "") settings[spec.key] = spec.integer ? parseInt(text, 10) : parseFloat(text);
    }
    // Used for replies only once the server accepted them.
    if (state.chat) {
      try {
        state.chat = await patch(`/bodhi/v1/chats/${state.chat.id}`, { settings, system_prompt: systemPrompt.value });
        toast("Settings saved for this chat.");
      } catch (error) { report(error); return; }
    }
    state.settings = settings;
    state.systemPrompt = systemPrompt.value;
    if (!state.chat) {
      toast("Settings will be kept with this chat once you send the first message.");
    }
    settingsPanel.hidden = true;
    settingsButton.setAttribute("aria-expanded", "false");
  });

  // --- rename and delete ---
  renameButton.addEventListener("click", async () => {
    if (!state.chat) return;
    const name = window.prompt("Rename chat", state.chat.title);
    if (name === null) return;
    try {
      state.chat = await patch(`/bodhi/v1/chats/${state.chat.id}`, { title: name });
      title.textContent = state.chat.title || "New chat";
      loadList();
    } catch (error) { report(error); }
  });
  deleteButton.addEventListener("click", async () => {
    if (!state.chat || !(await confirmAction(`Delete the chat "${state.chat.title || "New chat"}"?`))) return;
    try {
      await del(`/bodhi/v1/chats/${state.chat.id}`);
      toast("Chat deleted.");
      navigate("/ui/chat");
    } catch (error) { report(error); }
  });

  // --- messages ---
  function messageView(message, index) {
    const body = h("div", { class: "message-body" });
    if (message.role === "assistant") body.append(renderMarkdown(message.content));
    else body.textContent = message.content;
    const actions = h("div", { class: "message-actions" });
    const isLast = index === state.messages.length - 1;
    if (!state.controller) {
      if (message.role === "user") {
        actions.append(h("button", { type: "button", class: "ghost small", onclick: () => edit(index) }, "Edit"));
        if (isLast) actions.append(h("button", { type: "button", class: "ghost small", onclick: () => reply(null) }, "Get a reply"));
      } else if (message.role === "assistant") {
        actions.append(h("button", { type: "button", class: "ghost small", onclick: () => copyText(message.content, "Reply copied") }, "Copy"));
        if (isLast) actions.append(h("button", { type: "button", class: "ghost small", onclick: () => reply(index) }, "Regenerate"));
      }
    }
    return h("article", { class: `message ${message.role}${message.error ? " failed" : ""}`, dataset: { index } },
      h("header", {}, h("strong", {}, message.role === "user" ? "You" : message.model ?? "Assistant"), statsView(message)),
      body, message.error ? h("p", { class: "form-error", role: "alert" }, message.error) : null, actions);
  }

  function statsView(message) {
    const stats = message.stats;
    if (!stats) return message.streaming ? h("small", { class: "stats" }, "…") : null;
    const parts = [];
    if (stats.ttft_ms !== undefined && stats.ttft_ms !== null) parts.push(`TTFT ${Math.round(stats.ttft_ms)} ms`);
    if (stats.tokens_per_second) parts.push(`${stats.tokens_per_second.toFixed(1)} tok/s`);
    if (stats.completion_tokens) parts.push(`${stats.completion_tokens} tokens`);
    if (stats.stopped) parts.push("stopped");
    return h("small", { class: "stats" }, parts.join(" · "));
  }

  function renderMessages() {
    replace(log, state.messages.length
      ? state.messages.map(messageView)
      : h("p", { class: "empty" }, state.models.length ? "Ask anything. Replies stream in as the model writes them." : "No model is available yet."));
    log.scrollTop = log.scrollHeight;
  }

  let frame = 0;
  function renderStreaming() {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const index = state.messages.length - 1;
      const node = log.querySelector(`article[data-index="${index}"]`);
      if (!node) return renderMessages();
      const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      node.replaceWith(messageView(state.messages[index], index));
      if (stick) log.scrollTop = log.scrollHeight;
    });
  }

  function setBusy(busy) {
    // Screen readers wait for the finished reply instead of re-reading every redraw.
    log.setAttribute("aria-busy", String(busy));
    sendButton.textContent = busy ? "Stop" : "Send";
    sendButton.classList.toggle("danger", busy);
    sendButton.setAttribute("aria-label", busy ? "Stop the reply" : "Send");
  }

  function report(error) { toast(error.message, "error"); return null; }

  /** Saves `messages` after the first `replaceFrom` kept ones (appends when null), creating the chat first if needed. */
  async function save(messages, replaceFrom) {
    if (!state.chat) {
      const created = await post("/bodhi/v1/chats", {
        model: state.model, system_prompt: state.systemPrompt, settings: state.settings, messages,
      });
      state.chat = created;
      // Only while this page is still the one shown.
      if (location.pathname === "/ui/chat") history.replaceState(null, "", `/ui/chat/${created.id}`);
      title.textContent = created.title || "New chat";
      renameButton.hidden = deleteButton.hidden = false;
      loadList();
      return created.messages;
    }
    const updated = await post(`/bodhi/v1/chats/${state.chat.id}/messages`, { messages, replace_from: replaceFrom ?? undefined });
    const firstTitle = !state.chat.title && updated.title;
    state.chat = updated;
    title.textContent = updated.title || "New chat";
    if (firstTitle || replaceFrom === null) loadList();
    return updated.messages;
  }

  /** Streams a reply to the conversation so far; `replaceFrom` is the index of the reply it replaces. */
  async function reply(replaceFrom) {
    if (state.controller || state.sending) return;
    if (!state.model) { toast("Choose a model first.", "error"); return; }
    const history = state.messages.slice(0, replaceFrom ?? state.messages.length).map(({ role, content }) => ({ role, content }));
    state.messages = state.messages.slice(0, replaceFrom ?? state.messages.length);
    const message = { role: "assistant", content: "", model: state.model, streaming: true };
    state.messages.push(message);
    state.controller = new AbortController();
    setBusy(true);
    renderMessages();

    const body = { model: state.model, stream: true, stream_options: { include_usage: true }, ...state.settings, messages: history };
    if (state.systemPrompt) body.messages = [{ role: "system", content: state.systemPrompt }, ...history];
    const started = performance.now();
    let firstToken = null, chunks = 0, usage = null, stopped = false;
    try {
      const response = await request("POST", "/v1/chat/completions", body, { signal: state.controller.signal, raw: true });
      await readEvents(response, (event) => {
        if (event.error) throw new Error(event.error.message ?? "The engine failed.");
        const delta = event.choices?.[0]?.delta?.content;
        if (delta) {
          firstToken ??= performance.now();
          message.content += delta;
          chunks += 1;
          renderStreaming();
        }
        if (event.usage) usage = event.usage;
      });
    } catch (error) {
      if (error.name === "AbortError") stopped = true;
      else message.error = error.message;
    }
    const finished = performance.now();
    const tokens = usage?.completion_tokens ?? chunks;
    const generating = firstToken ? (finished - firstToken) / 1000 : 0;
    message.stats = {
      ttft_ms: firstToken ? firstToken - started : null,
      tokens_per_second: generating > 0 && tokens > 1 ? (tokens - 1) / generating : null,
      completion_tokens: tokens || null, prompt_tokens: usage?.prompt_tokens ?? null,
      duration_ms: finished - started, stopped,
    };
    delete message.streaming;
    if (!message.error || message.content) {
      try {
        const saved = await save([{ role: "assistant", content: message.content, model: message.model, stats: message.stats }], replaceFrom);
        state.messages = saved;
      } catch (error) { report(error); }
    }
    // Ready for the next message only once this reply is stored, so turns never interleave.
    state.controller = null;
    setBusy(false);
    renderMessages();
    prompt.focus();
  }

  /** Sends a new user message (or an edited one at `replaceFrom`) and streams the reply. */
  /** Sends a new user message (or an edited one at `replaceFrom`) and streams the reply; false if it could not be saved. */
  async function send(text, replaceFrom = null) {
    if (!text.trim() || state.controller || state.sending) return false;
    if (!state.model) { toast("Choose a model first: pull one on the Models page.", "error"); return false; }
    // Busy from the first request on, so a second Enter cannot start a second turn.
    state.sending = true;
    setBusy(true);
    try {
      state.messages = await save([{ role: "user", content: text }], replaceFrom);
    } catch (error) {
      report(error);
      setBusy(false);
      return false;
    } finally {
      state.sending = false;
    }
    renderMessages();
    await reply(null);
    return true;
  }

  function edit(index) {
    const node = log.querySelector(`article[data-index="${index}"]`);
    const editor = h("textarea", { rows: 4, "aria-label": "Edit message" });
    editor.value = state.messages[index].content;
    const done = h("button", { type: "button", class: "primary small" }, "Save and send");
    const cancel = h("button", { type: "button", class: "ghost small", onclick: renderMessages }, "Cancel");
    done.addEventListener("click", () => send(editor.value, index));
    node.querySelector(".message-body").replaceWith(editor);
    node.querySelector(".message-actions").replaceChildren(done, cancel);
    editor.focus();
  }

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (state.controller) { state.controller.abort(); return; }
    if (state.sending) return;
    const text = prompt.value;
    prompt.value = "";
    // What was typed comes back when it could not be sent.
    if (!(await send(text)) && !prompt.value) prompt.value = text;
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  // --- open the chat in the address, or a new one ---
  if (params[0]) {
    try {
      const conversation = await get(`/bodhi/v1/chats/${params[0]}`);
      state.chat = conversation;
      state.messages = conversation.messages;
      state.settings = conversation.settings ?? {};
      state.systemPrompt = conversation.system_prompt ?? "";
      title.textContent = conversation.title || "New chat";
      document.title = `${conversation.title || "Chat"} · Bodhi`;
    } catch (error) {
      report(error);
    }
  } else {
    document.title = "Chat · Bodhi";
  }
  renameButton.hidden = deleteButton.hidden = !state.chat;
  fillModels();
  fillSettings();
  renderMessages();
  loadList();
  prompt.focus();
  return () => state.controller?.abort();
}
