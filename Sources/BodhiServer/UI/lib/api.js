// Bodhi's HTTP APIs as the browser session sees them: the session cookie goes with every
// request, and every change carries the CSRF token that sign-in gave.

let csrfToken = null;

export function setCsrfToken(token) { csrfToken = token; }

/** An API error with the server's own message (OpenAI's, Ollama's or Bodhi's error JSON). */
export class APIError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`;
  let param = null;
  try {
    const body = await response.json();
    const detail = typeof body.error === "string" ? { message: body.error } : body.error ?? body;
    if (detail?.message) message = detail.message;
    param = detail?.param ?? null;
  } catch { /* not JSON: keep the status line */ }
  if (response.status === 401) window.dispatchEvent(new CustomEvent("bodhi:signed-out"));
  return new APIError(response.status, message, param);
}

/** Sends a request; JSON in and out. Throws APIError for any non-2xx answer. */
export async function request(method, path, body, { signal, raw = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrfToken && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new APIError(0, "Bodhi cannot be reached. Is it still running?");
  }
  if (!response.ok) throw await errorFrom(response);
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path, options) => request("GET", path, undefined, options);
export const post = (path, body, options) => request("POST", path, body ?? {}, options);
export const put = (path, body) => request("PUT", path, body ?? {});
export const patch = (path, body) => request("PATCH", path, body ?? {});
export const del = (path) => request("DELETE", path);

/** Reads a server-sent event stream, calling `onEvent` with each `data:` payload parsed as JSON. */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  // True when the stream says it is done.
  const deliver = (block) => {
    const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
    if (!data) return false;
    if (data === "[DONE]") return true;
    onEvent(JSON.parse(data));
    return false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      if (deliver(block)) return;
    }
  }
  // A last event without the blank line after it still counts.
  if (buffer.trim()) deliver(buffer);
}

/** A model id or alias as one path segment. */
export const segment = (name) => encodeURIComponent(name);
