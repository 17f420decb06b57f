// People: access requests to decide, and every account's role and state (managers and admins).

import { hasRole } from "../app.js";
import { del, get, post, put } from "../lib/api.js";
import { confirmAction, formatTime, h, page, replace, table, toast } from "../lib/dom.js";

const roles = ["user", "power_user", "manager", "admin"];

export async function render(main, { session }) {
  const requestsBox = h("div", { class: "table-scroll" });
  const usersBox = h("div", { class: "table-scroll" });
  // A manager hands out roles up to their own.
  const grantable = roles.filter((role) => hasRole(session.user, role));

  const roleSelect = (current) => h("select", { "aria-label": "Role" },
    h("option", { value: "", selected: !current }, "no role"),
    grantable.concat(current && !grantable.includes(current) ? [current] : []).map((role) => h("option", { value: role, selected: role === current }, role)));

  async function load() {
    try {
      const [{ data: requests }, { data: users }] = await Promise.all([get("/bodhi/v1/access-requests"), get("/bodhi/v1/users")]);
      const pending = requests.filter((request) => request.status === "pending");
      replace(requestsBox, pending.length === 0 ? h("p", { class: "muted" }, "No one is waiting.") : table("Pending access requests", ["User", "Asked", "Role to grant", ""],
        pending.map((request) => {
          const role = roleSelect("user");
          role.querySelector('option[value=""]').remove();
          return h("tr", {},
            h("td", {}, request.username), h("td", {}, formatTime(request.created_at)), h("td", {}, role),
            h("td", {}, h("div", { class: "row" },
              h("button", { type: "button", class: "primary small", onclick: () => decide(request, "approve", role.value) }, "Approve"),
              h("button", { type: "button", class: "ghost small danger-text", onclick: () => decide(request, "reject") }, "Reject"))));
        })));
      replace(usersBox, table("Users", ["User", "Role", "Status", "Since", ""],
        users.map((user) => {
          const self = user.id === session.user.id;
          const role = roleSelect(user.role);
          role.disabled = self;
          role.addEventListener("change", () => change(`/bodhi/v1/users/${user.id}/role`, { role: role.value || null }, `${user.username} is now ${role.value || "without a role"}.`));
          return h("tr", {},
            h("td", {}, user.username, self ? h("span", { class: "muted" }, " (you)") : null),
            h("td", {}, role),
            h("td", {}, h("span", { class: `tag ${user.disabled ? "" : "ok"}` }, user.disabled ? "disabled" : "active")),
            h("td", {}, formatTime(user.created_at)),
            h("td", {}, self ? null : h("div", { class: "row" },
              h("button", { type: "button", class: "ghost small", onclick: () => change(`/bodhi/v1/users/${user.id}/disabled`, { disabled: !user.disabled }, `${user.username} ${user.disabled ? "enabled" : "disabled"}.`) }, user.disabled ? "Enable" : "Disable"),
              h("button", { type: "button", class: "ghost small danger-text", onclick: () => remove(user) }, "Delete"))));
        })));
    } catch (error) {
      replace(usersBox, h("p", { class: "form-error" }, error.message));
    }
  }

  async function decide(request, action, role) {
    try {
      await post(`/bodhi/v1/access-requests/${request.id}/${action}`, action === "approve" ? { role } : {});
      toast(action === "approve" ? `${request.username} may now sign in as ${role}.` : `${request.username}'s request was rejected.`);
      load();
    } catch (error) { toast(error.message, "error"); }
  }

  async function change(path, body, done) {
    try { await put(path, body); toast(done); } catch (error) { toast(error.message, "error"); }
    load();
  }

  async function remove(user) {
    if (!(await confirmAction(`Delete ${user.username}? Their tokens and chats go with them.`))) return;
    try { await del(`/bodhi/v1/users/${user.id}`); toast(`${user.username} deleted.`); load(); } catch (error) { toast(error.message, "error"); }
  }

  main.append(...page("Users", h("h2", {}, "Access requests"), requestsBox, h("h2", {}, "Everyone"), usersBox));
  await load();
}
