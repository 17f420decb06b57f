// Bodhi's browser UI: finds out who is signed in, routes between pages, and keeps the
// navigation in step with the user's role. Each page lives in views/.

import { get, post, setCsrfToken } from "./lib/api.js";
import { h, replace, toast } from "./lib/dom.js";

const roleRank = { user: 1, power_user: 2, manager: 3, admin: 4 };

/** Whether `user` holds `role` or a higher one. */
export function hasRole(user, role) {
  return (roleRank[user?.role] ?? 0) >= roleRank[role];
}

// Pages: path pattern, module, the least role (null: signed in; "public": anyone), nav label.
const pages = [
  { path: /^\/ui\/setup$/, module: "auth.js", view: "setup", access: "public" },
  { path: /^\/ui\/login$/, module: "auth.js", view: "login", access: "public" },
  { path: /^\/ui\/register$/, module: "auth.js", view: "register", access: "public" },
  { path: /^\/ui\/chat(?:\/([\w-]+))?$/, module: "chat.js", access: "user", nav: "Chat", href: "/ui/chat" },
  { path: /^\/ui\/models$/, module: "models.js", access: "user", nav: "Models", href: "/ui/models" },
  { path: /^\/ui\/backends$/, module: "backends.js", access: "power_user", nav: "Backends", href: "/ui/backends" },
  { path: /^\/ui\/tokens$/, module: "tokens.js", access: "user", nav: "Tokens", href: "/ui/tokens" },
  { path: /^\/ui\/users$/, module: "users.js", access: "manager", nav: "Users", href: "/ui/users" },
  { path: /^\/ui\/settings$/, module: "settings.js", access: "admin", nav: "Settings", href: "/ui/settings" },
  { path: /^\/ui\/status$/, module: "status.js", access: "user", nav: "Status", href: "/ui/status" },
  { path: /^\/ui\/account$/, module: "auth.js", view: "account", access: null },
];

// `setUp` is remembered once true: a set-up Bodhi never goes back, so pages stop asking.
const state = { session: null, cleanup: null, rendering: 0, setUp: false };

/** Goes to `path` inside the UI without reloading the page. */
export function navigate(path, { replace: replaceEntry = false } = {}) {
  if (replaceEntry) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

/** Reads the signed-in user again (after sign-in, sign-out, a role change). */
export async function refreshSession() {
  // Asked without an error status when nobody is signed in, so a first visit logs no error.
  const me = await get("/bodhi/v1/auth/session");
  state.session = me.signed_in ? { user: me.user, via: me.via } : null;
  setCsrfToken(me.signed_in ? me.csrf_token : null);
  renderChrome();
  return state.session;
}

export async function signOut() {
  try { await post("/bodhi/v1/auth/logout"); } catch { /* already gone */ }
  state.session = null;
  setCsrfToken(null);
  renderChrome();
  navigate("/ui/login");
}

function renderChrome() {
  const user = state.session?.user;
  const nav = document.getElementById("nav");
  const links = pages.filter((page) => page.nav && user && hasRole(user, page.access));
  const current = location.pathname;
  replace(nav, h("ul", {}, links.map((page) => h("li", {},
    h("a", { href: page.href, "aria-current": current.startsWith(page.href) ? "page" : null }, page.nav)))));
  const who = document.getElementById("who");
  if (!user) { replace(who); return; }
  replace(who,
    h("a", { href: "/ui/account", title: "Account" }, user.username, h("span", { class: "role" }, user.role ?? "no role")),
    h("button", { type: "button", class: "ghost small", onclick: signOut }, "Sign out"));
}

async function render() {
  const ticket = ++state.rendering;
  if (state.cleanup) { try { state.cleanup(); } catch { /* a page's own cleanup failing must not stop the next */ } state.cleanup = null; }
  document.body.classList.remove("nav-open");
  document.getElementById("menu-toggle").setAttribute("aria-expanded", "false");
  const main = document.getElementById("main");
  let path = location.pathname.replace(/\/+$/, "");
  if (path === "/ui" || path === "") path = "/ui/chat";

  try {
    if (!state.setUp) state.setUp = !(await get("/bodhi/v1/setup")).setup_required;
    if (!state.setUp && path !== "/ui/setup") return navigate("/ui/setup", { replace: true });
    if (state.setUp && !state.session) await refreshSession();
  } catch (error) {
    replace(main, h("div", { class: "panel error" }, h("h1", {}, "Bodhi is not answering"), h("p", {}, error.message)));
    return;
  }
  if (ticket !== state.rendering) return;

  const page = pages.find((candidate) => candidate.path.test(path));
  if (!page) { replace(main, h("div", { class: "panel" }, h("h1", {}, "Not found"), h("p", {}, "There is no such page. "), h("a", { href: "/ui/chat" }, "Go to chat"))); return; }
  const user = state.session?.user;
  if (page.access !== "public" && !user) return navigate(`/ui/login?next=${encodeURIComponent(path)}`, { replace: true });
  if (page.access === "public" && user && page.view !== "setup") return navigate("/ui/chat", { replace: true });
  if (user && !user.role && page.access !== "public" && page.view !== "account") {
    const module = await import("./views/auth.js");
    replace(main, ...module.pending({ session: state.session }));
    renderChrome();
    return;
  }
  if (page.access && page.access !== "public" && !hasRole(user, page.access)) {
    replace(main, h("div", { class: "panel error", role: "alert" },
      h("h1", {}, "Not allowed"),
      h("p", {}, `This page needs the role ${page.access} or higher; your role is ${user.role}. Ask a manager if you need it.`)));
    renderChrome();
    return;
  }
  renderChrome();
  const module = await import(`./views/${page.module}`);
  if (ticket !== state.rendering) return;
  const match = page.path.exec(path);
  replace(main);
  try {
    const cleanup = (await module[page.view ?? "render"](main, {
      session: state.session, params: match.slice(1), query: new URLSearchParams(location.search),
    })) ?? null;
    // Left while it loaded: its timers and streams stop now, not at some later navigation.
    if (ticket !== state.rendering) { cleanup?.(); return; }
    state.cleanup = cleanup;
  } catch (error) {
    replace(main, h("div", { class: "panel error", role: "alert" }, h("h1", {}, "Something went wrong"), h("p", {}, error.message)));
  }
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

function boot() {
  applyTheme(localStorage.getItem("bodhi-theme"));
  document.getElementById("theme-toggle").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    const next = dark ? "light" : "dark";
    localStorage.setItem("bodhi-theme", next);
    applyTheme(next);
  });
  const toggle = document.getElementById("menu-toggle");
  toggle.addEventListener("click", () => {
    const open = document.body.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  // Links inside the UI change the page without a reload.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || link.target || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    const url = new URL(link.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
    // Same page, another place on it (the skip link): the browser's own jump.
    if (url.hash && url.pathname === location.pathname) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", render);
  window.addEventListener("bodhi:signed-out", () => {
    if (!state.session) return;
    state.session = null;
    toast("Your session has ended; sign in again.", "error");
    navigate(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
  });
  render();
}

boot();
