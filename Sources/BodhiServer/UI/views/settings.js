// Settings (admins): every setting with its value and source; the editable ones change live.

import { del, get, put } from "../lib/api.js";
import { h, page, replace, table, toast } from "../lib/dom.js";

export async function render(main) {
  const box = h("div", { class: "table-scroll" });

  async function load() {
    try {
      const { data } = await get("/bodhi/v1/settings");
      replace(box, table("Settings", ["Setting", "Value", "Default", "Source", ""],
        data.map((setting) => {
          const value = h("input", { value: setting.value, "aria-label": setting.key, disabled: !setting.editable, spellcheck: "false" });
          const error = h("small", { class: "form-error", role: "alert", hidden: true });
          const save = async () => {
            error.hidden = true;
            try {
              await put(`/bodhi/v1/settings/${setting.key}`, { value: value.value });
              toast(`${setting.key} saved; it takes effect ${setting.takes_effect ?? "at once"}.`);
              load();
            } catch (failure) {
              error.textContent = failure.message;
              error.hidden = false;
            }
          };
          value.addEventListener("keydown", (event) => { if (event.key === "Enter") save(); });
          return h("tr", {},
            h("th", { scope: "row" }, h("code", {}, setting.key), setting.takes_effect ? h("div", { class: "muted small" }, `takes effect ${setting.takes_effect}`) : null),
            h("td", {}, value, error),
            h("td", {}, h("code", {}, setting.default || "—")),
            h("td", {}, setting.source),
            h("td", {}, setting.editable ? h("div", { class: "row" },
              h("button", { type: "button", class: "small", onclick: save }, "Save"),
              h("button", { type: "button", class: "ghost small", onclick: async () => {
                try { await del(`/bodhi/v1/settings/${setting.key}`); toast(`${setting.key} reset.`); load(); } catch (failure) { toast(failure.message, "error"); }
              } }, "Reset")) : h("span", { class: "muted small" }, "set at start")));
        }), { class: "settings" }));
    } catch (error) {
      replace(box, h("p", { class: "form-error" }, error.message));
    }
  }

  main.append(...page("Settings",
    h("p", { class: "lead" }, "Changes are written to settings.yaml in BODHI_HOME, so they survive a restart. A flag or environment variable given at start still wins over the file."),
    box));
  await load();
}
