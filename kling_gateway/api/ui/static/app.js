// The dashboard's pages, by the URL's hash (#/tasks, #/task/ID, #/create, #/admin/...).

import { ApiError, session, signIn } from "./api.js";
import { errorBox, field, h } from "./dom.js";
import { createPage } from "./form.js";
import { taskList, taskPage } from "./tasks.js";
import { accountsPage, callbacksPage, tokensPage, usersPage } from "./admin.js";
import { adminUsagePage, ownUsagePage } from "./usage.js";

const USER_PAGES = [["#/tasks", "Tasks"], ["#/create", "Create"], ["#/usage", "Usage"]];
const ADMIN_PAGES = [
  ["#/admin/users", "Users"], ["#/admin/tokens", "Tokens"], ["#/admin/accounts", "Accounts"],
  ["#/admin/tasks", "All tasks"], ["#/admin/callbacks", "Callbacks"], ["#/admin/usage", "All usage"],
];

const ROUTES = [
  [/^#\/tasks$/, (main, _, query) => taskList(main, query, false)],
  [/^#\/task\/([^/?]+)$/, (main, m) => taskPage(main, decodeURIComponent(m[1]), false)],
  [/^#\/create$/, (main, _, query) => createPage(main, query)],
  [/^#\/admin\/users$/, (main) => usersPage(main)],
  [/^#\/admin\/tokens$/, (main) => tokensPage(main)],
  [/^#\/admin\/accounts$/, (main) => accountsPage(main)],
  [/^#\/admin\/tasks$/, (main, _, query) => taskList(main, query, true)],
  [/^#\/admin\/task\/([^/?]+)$/, (main, m) => taskPage(main, decodeURIComponent(m[1]), true)],
  [/^#\/admin\/callbacks$/, (main, _, query) => callbacksPage(main, query)],
  [/^#\/usage$/, (main, _, query) => ownUsagePage(main, query)],
  [/^#\/admin\/usage$/, (main, _, query) => adminUsagePage(main, query)],
];

let leave = null; // what the page open now stops when another opens (an event stream)

async function render() {
  if (leave) { leave(); leave = null; }
  const main = document.getElementById("main");
  main.replaceChildren();
  if (!session.token) {
    nav();
    signInPage(main);
    return;
  }
  const [path, search = ""] = (location.hash || "#/tasks").split("?");
  nav(path);
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) { location.hash = "#/tasks"; return; }
  try {
    leave = (await route[1](main, path.match(route[0]), new URLSearchParams(search))) || null;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) { session.clear(); render(); return; }
    main.append(errorBox(exc));
  }
}

function nav(current) {
  const links = session.token ? [...USER_PAGES, ...(session.admin ? ADMIN_PAGES : [])] : [];
  document.getElementById("nav").replaceChildren(...links.map(([href, text]) =>
    h("a", { href, class: current && current.startsWith(href) ? "current" : null }, text)));
  document.getElementById("who").textContent = session.token ? (session.admin ? "operator" : "user") : "";
  document.getElementById("signout").hidden = !session.token;
}

function signInPage(main) {
  const input = h("input", { name: "token", type: "password", autocomplete: "off", required: true, placeholder: "kg-…" });
  const problem = h("div");
  const form = h("form", { class: "card narrow", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With an API token (kling-gateway tokens create --user NAME). It is kept in this tab only."),
    field("API token", input),
    h("button", { type: "submit" }, "Sign in"), problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    try {
      await signIn(input.value.trim());
      if (!location.hash || location.hash === "#/signin") location.hash = "#/tasks";
      else render();
    } catch (exc) {
      problem.append(errorBox(exc));
    }
  });
  main.append(form);
  input.focus();
}

document.getElementById("signout").addEventListener("click", () => {
  session.clear();
  location.hash = "#/tasks";
  render();
});
window.addEventListener("hashchange", render);
render();
