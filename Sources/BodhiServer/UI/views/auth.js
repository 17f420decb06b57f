// First run, sign-in, registration, the account page, and the wait for access.

import { navigate, refreshSession, signOut } from "../app.js";
import { get, post, put } from "../lib/api.js";
import { actionForm, field, h, page, toast } from "../lib/dom.js";

const input = (name, type = "text", extra = {}) => h("input", { name, type, required: true, ...extra });

async function signIn(username, password, next) {
  await post("/bodhi/v1/auth/login", { username, password });
  await refreshSession();
  navigate(next && next.startsWith("/ui/") ? next : "/ui/chat", { replace: true });
}

export async function setup(main) {
  const { setup_required: required } = await get("/bodhi/v1/setup");
  if (!required) return navigate("/ui/login", { replace: true });
  const username = input("username", "text", { autocomplete: "username", value: "admin" });
  const password = input("password", "password", { autocomplete: "new-password", minlength: 8 });
  const again = input("password-again", "password", { autocomplete: "new-password" });
  main.append(...page("Welcome to Bodhi",
    h("p", { class: "lead" }, "Create the first account. It becomes the administrator, who can invite everyone else."),
    actionForm({ label: "Create the administrator", submitLabel: "Create administrator", className: "panel narrow" }, [
      field("Username", username),
      field("Password", password, "At least 8 characters."),
      field("Password again", again),
    ], async () => {
      if (password.value !== again.value) throw new Error("The two passwords differ.");
      await post("/bodhi/v1/setup", { username: username.value.trim(), password: password.value });
      await signIn(username.value.trim(), password.value);
      toast("Bodhi is set up. Welcome!");
    })));
  username.focus();
}

export function login(main, { query }) {
  const username = input("username", "text", { autocomplete: "username" });
  const password = input("password", "password", { autocomplete: "current-password" });
  main.append(...page("Sign in",
    actionForm({ label: "Sign in", submitLabel: "Sign in", className: "panel narrow" }, [field("Username", username), field("Password", password)],
      () => signIn(username.value.trim(), password.value, query.get("next"))),
    h("p", { class: "center" }, "New here? ", h("a", { href: "/ui/register" }, "Create an account"), " and ask for access.")));
  username.focus();
}

export function register(main) {
  const username = input("username", "text", { autocomplete: "username" });
  const password = input("password", "password", { autocomplete: "new-password", minlength: 8 });
  main.append(...page("Create an account",
    h("p", { class: "lead" }, "A manager decides what you may do; until then you can sign in and ask for access."),
    actionForm({ label: "Create an account", submitLabel: "Create account", className: "panel narrow" }, [field("Username", username), field("Password", password, "At least 8 characters.")], async () => {
      await post("/bodhi/v1/auth/register", { username: username.value.trim(), password: password.value });
      await signIn(username.value.trim(), password.value);
    }),
    h("p", { class: "center" }, "Have an account? ", h("a", { href: "/ui/login" }, "Sign in"))));
  username.focus();
}

/** What a signed-in user without a role sees: a way to ask for one. */
export function pending({ session }) {
  const status = h("p", { role: "status" });
  const ask = h("button", { type: "button", class: "primary" }, "Request access");
  ask.addEventListener("click", async () => {
    ask.disabled = true;
    try {
      await post("/bodhi/v1/access-requests");
      status.textContent = "Your request was sent. A manager will decide; sign in again once they have.";
    } catch (error) {
      status.textContent = error.message;
      ask.disabled = false;
    }
  });
  return page("Waiting for access",
    h("div", { class: "panel narrow" },
      h("p", {}, `You are signed in as ${session.user.username}, but you have no role yet, so you cannot chat or see models.`),
      ask, status,
      h("p", {}, h("button", { type: "button", class: "ghost", onclick: signOut }, "Sign out"))));
}

export function account(main, { session }) {
  const current = input("current", "password", { autocomplete: "current-password" });
  const fresh = input("new", "password", { autocomplete: "new-password", minlength: 8 });
  main.append(...page("Account",
    h("dl", { class: "facts panel narrow" },
      h("dt", {}, "Username"), h("dd", {}, session.user.username),
      h("dt", {}, "Role"), h("dd", {}, session.user.role ?? "none yet")),
    h("h2", {}, "Change password"),
    actionForm({ label: "Change password", submitLabel: "Change password", className: "panel narrow" }, [field("Current password", current), field("New password", fresh, "At least 8 characters.")], async () => {
      await put("/bodhi/v1/users/me/password", { current: current.value, new: fresh.value });
      toast("Password changed. Sign in with the new one.");
      await refreshSession();
      navigate("/ui/login", { replace: true });
    })));
}
