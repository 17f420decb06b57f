// Status: health of each component, loaded engines, and the key counters from /metrics.

import { get } from "../lib/api.js";
import { formatBytes, h, page, replace, table } from "../lib/dom.js";

/** Sums of each metric family in Prometheus text, by name (labels folded together). */
function metricTotals(text) {
  const totals = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (Number.isFinite(value)) totals[match[1]] = (totals[match[1]] ?? 0) + value;
  }
  return totals;
}

const figures = [
  ["Inference requests", "bodhi_inference_requests_total", (v) => v.toLocaleString()],
  ["Prompt tokens", "bodhi_prompt_tokens_total", (v) => v.toLocaleString()],
  ["Completion tokens", "bodhi_completion_tokens_total", (v) => v.toLocaleString()],
  ["Mean time to first token", ["bodhi_time_to_first_token_seconds_sum", "bodhi_time_to_first_token_seconds_count"], (v) => `${Math.round(v * 1000)} ms`],
  ["Waiting in queues", "bodhi_queue_depth", (v) => v.toLocaleString()],
  ["Requests in flight", "bodhi_queue_in_flight", (v) => v.toLocaleString()],
  ["Rate-limited requests", "bodhi_rate_limited_total", (v) => v.toLocaleString()],
  ["HTTP requests", "bodhi_http_requests_total", (v) => v.toLocaleString()],
];

export async function render(main) {
  const health = h("div");
  const engines = h("div", { class: "table-scroll" });
  const numbers = h("div", { class: "figures" });
  const refreshed = h("p", { class: "muted small", "aria-live": "polite" });

  async function load() {
    const [report, running, metrics] = await Promise.allSettled([
      // Not ready is an answer too (503 with the same report), so the body is read either way.
      fetch("/health/ready", { credentials: "same-origin" }).then((response) => response.json()),
      get("/bodhi/v1/engines"), get("/metrics"),
    ]);
    if (report.status === "fulfilled") {
      const value = report.value;
      replace(health, h("p", {}, "Overall: ", h("span", { class: `tag ${value.status === "ready" ? "ok" : "bad"}` }, value.status.replace("_", " "))),
        h("ul", { class: "health" }, Object.entries(value.components).sort().map(([name, component]) =>
          h("li", {}, h("span", { class: `tag ${component.status === "ok" ? "ok" : "bad"}` }, component.status), " ",
            h("strong", {}, name), " ", h("span", { class: "muted" }, component.detail)))));
    } else {
      replace(health, h("p", { class: "form-error" }, report.reason.message));
    }
    if (running.status === "fulfilled") {
      const { engines: list, memory_budget_bytes: budget, memory_estimated_bytes: estimated } = running.value;
      const use = h("p", { class: "muted" }, budget === null
        ? `Loaded engines are expected to take ${formatBytes(estimated)}; no memory budget is set.`
        : `Loaded engines are expected to take ${formatBytes(estimated)} of the ${formatBytes(budget)} memory budget.`);
      replace(engines, list.length === 0 ? h("p", { class: "muted" }, "No model is loaded; the first request to a model loads it.") : h("div", {}, use,
        table("Loaded engines", ["Model", "State", "Slots", "In flight", "Memory", "Estimate", "Idle", "Restarts"],
          list.map((engine) => h("tr", {},
            h("td", {}, h("code", {}, engine.model)), h("td", {}, engine.state), h("td", {}, engine.slots), h("td", {}, engine.in_flight),
            h("td", {}, formatBytes(engine.memory_bytes)), h("td", {}, formatBytes(engine.estimate_bytes)),
            h("td", {}, `${Math.round(engine.idle_seconds)} s`), h("td", {}, engine.restarts))))));
    } else {
      replace(engines, h("p", { class: "form-error" }, running.reason.message));
    }
    if (metrics.status === "fulfilled") {
      const totals = metricTotals(metrics.value);
      replace(numbers, figures.map(([label, name, format]) => {
        const value = Array.isArray(name) ? (totals[name[1]] ? totals[name[0]] / totals[name[1]] : null) : totals[name] ?? 0;
        return h("div", { class: "figure" }, h("span", { class: "figure-value" }, value === null ? "—" : format(value)), h("span", { class: "figure-label" }, label));
      }));
    } else {
      replace(numbers, h("p", { class: "form-error" }, metrics.reason.message));
    }
    refreshed.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every 5 seconds.`;
  }

  main.append(...page("Status", h("h2", {}, "Health"), health, h("h2", {}, "Engines"), engines, h("h2", {}, "Since start"), numbers, refreshed));
  await load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
