// The operator's pages (admin tokens only): users and applications, tokens, upstream accounts,
// callbacks. Every action is one call of /admin/v1/ (docs/admin.md).

import { admin } from "./api.js";
import { errorBox, field, h, select, table, when } from "./dom.js";
import { slotBars } from "./svg.js";

function act(call, after, problem) {
  return async (event) => {
    if (event) event.preventDefault();
    problem.replaceChildren();
    try {
      await call();
      await after();
    } catch (exc) {
      problem.append(errorBox(exc));
    }
  };
}

export async function usersPage(main) {
  const problem = h("div");
  const shown = h("div");
  const body = h("div", { class: "card", id: "users" });
  main.append(h("h1", {}, "Users and applications"), problem, shown, body);
  const showSecret = (name) => act(async () => {
    const found = await admin("GET", `/users/${encodeURIComponent(name)}/secret`);
    shown.replaceChildren(h("div", { class: "card notice", id: "secret" },
      h("p", {}, `${name}'s callback signing secret${found.previous ? ` (${found.previous} rotated-out still signing)` : ""}:`),
      h("code", { class: "token" }, found.secret)));
  }, async () => {}, problem);
  const load = async () => {
    const users = (await admin("GET", "/users")).items;
    body.replaceChildren(table(["User", "Tokens", "Tasks", "In flight", "Balance", "Grant credits", "Max in flight", "Application", ""],
      users.filter((u) => u.application).map((u) => {
        const app = u.application;
        const path = `/applications/${encodeURIComponent(u.name)}`;
        const credits = h("input", { type: "number", step: 1, name: "credits", class: "small", placeholder: "+100" });
        const grant = h("form", { class: "inline grant", "data-user": u.name }, credits, h("button", { type: "submit" }, "Grant"));
        grant.addEventListener("submit", act(() => admin("POST", `${path}/grants`, { credits: Number(credits.value) }), load, problem));
        const limit = h("input", { type: "number", min: 0, step: 1, name: "max_in_flight", class: "small", placeholder: app.max_in_flight ?? "none" });
        const setLimit = h("form", { class: "inline limit", "data-user": u.name }, limit, h("button", { type: "submit" }, "Set"));
        setLimit.addEventListener("submit", act(() => admin("PATCH", path, { max_in_flight: Number(limit.value) }), load, problem));
        const toggle = h("button", { type: "button", class: app.disabled ? "" : "danger", "data-user": u.name,
          onclick: act(() => admin("PATCH", path, { disabled: !app.disabled }), load, problem) }, app.disabled ? "Enable" : "Disable");
        const balance = app.metered
          ? h("span", { class: "balance", "data-user": u.name }, `${app.available} `, h("small", { class: "muted" }, `(${app.balance} − ${app.held} held)`))
          : h("span", { class: "balance muted", "data-user": u.name }, "unmetered");
        return [h("a", { href: `#/admin/usage?user=${encodeURIComponent(u.name)}` }, h("strong", {}, u.name)), u.tokens, u.tasks, app.in_flight,
          balance, grant, setLimit,
          app.disabled ? h("span", { class: "badge failed" }, "disabled") : h("span", { class: "badge succeed" }, "enabled"),
          h("span", { class: "buttons" }, toggle, h("button", { type: "button", class: "quiet", onclick: showSecret(u.name) }, "Secret"))];
      })));
  };
  await load();
}

export async function tokensPage(main) {
  const problem = h("div");
  const shown = h("div");
  const list = h("div", { class: "card", id: "tokens" });
  const form = h("form", { class: "card filters", id: "new-token" },
    field("User", h("input", { name: "user", required: true, placeholder: "name (created when new)" })),
    field("Expires in (days)", h("input", { name: "expires_in_days", type: "number", min: 0, step: "any", class: "small" })),
    field("Admin", h("input", { name: "admin", type: "checkbox" })),
    h("button", { type: "submit" }, "Create token"));
  main.append(h("h1", {}, "Tokens"), form, shown, problem, list);
  const load = async () => {
    const tokens = (await admin("GET", "/tokens")).items;
    list.replaceChildren(table(["Prefix", "User", "APIs", "Created", "Expires", "Status", ""],
      tokens.map((t) => [h("code", {}, t.prefix), t.user, t.apis.join(", "), when(t.created_at), when(t.expires_at),
        h("span", { class: `badge ${t.status === "active" ? "succeed" : "failed"}` }, t.status),
        t.status === "revoked" ? "" : h("button", { type: "button", class: "danger",
          onclick: act(() => admin("DELETE", `/tokens/${encodeURIComponent(t.id)}`), load, problem) }, "Revoke")])));
  };
  form.addEventListener("submit", act(async () => {
    const data = new FormData(form);
    const body = { user: data.get("user"), admin: data.get("admin") === "on" };
    if (data.get("expires_in_days")) body.expires_in_days = Number(data.get("expires_in_days"));
    const issued = await admin("POST", "/tokens", body);
    shown.replaceChildren(h("div", { class: "card notice", id: "issued" },
      h("p", {}, "The new token, shown this once:"), h("code", { class: "token" }, issued.token)));
    form.reset();
  }, load, problem));
  await load();
}

function packs(a) {
  if (a.packs_checked_at === null || a.packs_checked_at === undefined) return "unknown";
  return a.packs_run_out ? "run out" : String(a.packs_remaining);
}

export async function accountsPage(main) {
  const problem = h("div");
  const picture = h("div", { class: "card" });
  const list = h("div", { class: "card", id: "accounts" });
  main.append(h("h1", {}, "Upstream accounts"), problem, picture, list);
  const load = async () => {
    const accounts = (await admin("GET", "/accounts")).items;
    picture.replaceChildren(h("h2", {}, "Slots in use"), accounts.length ? slotBars(accounts)
      : h("p", { class: "muted" }, "No upstream accounts (the local provider needs none)."));
    list.replaceChildren(table(["Account", "State", "In flight", "Models", "Weight", "Packs", "Last error", ""],
      accounts.map((a) => {
        const next = a.state === "enabled" ? "disabled" : "enabled";
        return [h("strong", {}, a.name), h("span", { class: `badge ${a.state === "enabled" ? "succeed" : "failed"}` }, a.state),
          `${a.in_flight}/${a.max_concurrency}`, a.models.join(", ") || "every model", a.weight, packs(a), a.last_error || "–",
          h("button", { type: "button", onclick: act(() => admin("PATCH", `/accounts/${encodeURIComponent(a.name)}`, { state: next }), load, problem) },
            next === "enabled" ? "Enable" : "Disable")];
      }), "No accounts."));
  };
  await load();
}

export async function callbacksPage(main, query) {
  const failed = query.get("failed") === "true";
  const problem = h("div");
  const list = h("div", { class: "card", id: "callbacks" });
  const filter = h("form", { class: "filters" },
    field("Only failed", select("failed", ["true"], failed ? "true" : "", "all")),
    h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/admin/callbacks${filter.elements.failed.value ? "?failed=true" : ""}`;
  });
  main.append(h("h1", {}, "Callback deliveries"), filter, problem, list);
  const load = async () => {
    const found = (await admin("GET", `/callbacks?limit=200${failed ? "&failed=true" : ""}`)).items;
    list.replaceChildren(table(["Created", "Task", "Event", "State", "Attempts", "Last status", "Last error", "URL", ""],
      found.map((d) => [when(d.created_at), h("a", { href: `#/admin/task/${encodeURIComponent(d.task_id)}` }, d.task_id.slice(0, 8)),
        d.event, d.state, d.attempts, d.last_status ?? "–", d.last_error ?? "–", d.url,
        h("button", { type: "button", onclick: act(() => admin("POST", `/callbacks/${encodeURIComponent(d.id)}/redeliver`), load, problem) }, "Redeliver")]),
      "No deliveries."));
  };
  await load();
}
