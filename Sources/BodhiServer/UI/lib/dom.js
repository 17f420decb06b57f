// Building and updating the page without ever parsing HTML: every text goes in as a text node.

/** An element: h("button", {class: "primary", onclick: f}, "Send"). Children may be strings, nodes, arrays or null. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces everything in `element` with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A short message in the corner; errors stay until dismissed. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const close = h("button", { type: "button", class: "icon-button", "aria-label": "Dismiss" }, "×");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : null }, h("span", {}, message), close);
  close.addEventListener("click", () => item.remove());
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 4000);
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintNode = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintNode);
}

/** A data table: a caption for screen readers, column headings, and rows (`tr` elements). */
export function table(caption, headings, rows, attributes = {}) {
  return h("table", attributes,
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, headings.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows));
}

/**
 * A form whose submit runs `action`: its button is disabled meanwhile, and a failure's message
 * shows in the form. `buttons` go beside the submit button.
 */
export function actionForm({ label, submitLabel, className = "panel", buttons = [] }, fields, action) {
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, submitLabel);
  const form = h("form", { class: className, "aria-label": label }, fields, error, h("div", { class: "row" }, submit, buttons));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      await action();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** Asks before something that cannot be undone; resolves true when confirmed. */
export function confirmAction(question, action = "Delete") {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-label": question },
      h("p", {}, question),
      h("div", { class: "row end" },
        h("button", { type: "button", class: "ghost", onclick: () => dialog.close("no") }, "Cancel"),
        h("button", { type: "button", class: "danger", onclick: () => dialog.close("yes") }, action)));
    dialog.addEventListener("close", () => { resolve(dialog.returnValue === "yes"); dialog.remove(); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

/** Unix seconds as a local date and time. */
export function formatTime(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Copies text, telling the user it worked. */
export async function copyText(text, what = "Copied") {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} to the clipboard.`);
  } catch {
    toast("The browser did not allow copying; select the text and copy it by hand.", "error");
  }
}

/** A page heading and its content, focused for screen readers after navigation. */
export function page(title, ...children) {
  document.title = `${title} · Bodhi`;
  return [h("h1", { class: "page-title" }, title), ...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false)];
}
