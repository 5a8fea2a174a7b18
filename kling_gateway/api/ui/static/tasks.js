// A user's tasks (POST /kling/tasks retrieve_batch), every user's (GET /admin/v1/tasks), and
// one task: its video, its record, its callbacks, followed live over Server-Sent Events.

import { admin, follow, schema, tasks } from "./api.js";
import { badge, errorBox, field, h, pager, select, table, taskState, when } from "./dom.js";

const PAGE = 20;
const STATES = ["pending", "processing", "succeed", "failed"];

function epoch(local) {
  return local ? new Date(local).getTime() / 1000 : undefined;
}

function filtersFrom(query) {
  return {
    type: query.get("type") || "", state: query.get("state") || "", user: query.get("user") || "",
    from: query.get("from") || "", to: query.get("to") || "", offset: Number(query.get("offset") || 0),
  };
}

async function fetchPage(f, asAdmin) {
  const bounds = { created_at_min: epoch(f.from), created_at_max: epoch(f.to) };
  if (asAdmin) {
    const q = new URLSearchParams({ limit: PAGE, offset: f.offset });
    for (const [k, v] of Object.entries({ user: f.user, type: f.type, state: f.state, ...bounds })) {
      if (v !== undefined && v !== "") q.set(k, v);
    }
    return admin("GET", `/tasks?${q}`);
  }
  const body = { action: "retrieve_batch", limit: PAGE, offset: f.offset, ...bounds };
  if (f.type) body.type = f.type;
  if (f.state) body.state = f.state;
  return tasks(body);
}

async function userNames() {
  const users = (await admin("GET", "/users")).items;
  return new Map(users.map((u) => [u.id, u.name]));
}

export async function taskList(main, query, asAdmin) {
  const f = filtersFrom(query);
  const doc = await schema();
  const types = doc.components.schemas.TaskRecord.properties.type.enum;
  const base = asAdmin ? "#/admin/tasks" : "#/tasks";
  const go = (changes) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...f, ...changes })) if (v !== "" && v !== 0) q.set(k, v);
    location.hash = `${base}?${q}`;
  };
  const form = h("form", { class: "filters", id: "filters" },
    asAdmin ? field("User", h("input", { name: "user", value: f.user, placeholder: "any" })) : null,
    field("Type", select("type", types, f.type, "any")),
    field("State", select("state", STATES, f.state, "any")),
    field("Created from", h("input", { name: "from", type: "datetime-local", value: f.from })),
    field("to", h("input", { name: "to", type: "datetime-local", value: f.to })),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go({ ...Object.fromEntries(new FormData(form)), offset: 0 });
  });
  main.append(h("h1", {}, asAdmin ? "All tasks" : "Your tasks"), form);
  const [page, names] = await Promise.all([fetchPage(f, asAdmin), asAdmin ? userNames() : null]);
  const link = (r) => h("a", { href: `${asAdmin ? "#/admin/task/" : "#/task/"}${encodeURIComponent(r.id)}` }, r.id.slice(0, 8));
  const rows = page.items.map((r) => [
    when(r.created_at), link(r), asAdmin ? names.get(r.user_id) || r.user_id.slice(0, 8) : null,
    (r.request && r.request.action) || r.type, (r.request && r.request.model) || "kling-v1",
    badge(taskState(r)), (r.request && r.request.prompt) ? r.request.prompt.slice(0, 60) : "",
  ].filter((c) => c !== null));
  const columns = ["Created", "Task", ...(asAdmin ? ["User"] : []), "Action", "Model", "State", "Prompt"];
  main.append(h("div", { class: "card", id: "task-list" }, table(columns, rows, "No tasks match."),
    pager(f.offset, PAGE, page.count, (offset) => go({ offset }))));
}

function video(record) {
  const url = record.response && record.response.video_url;
  if (!url) return h("div", { class: "video placeholder" }, "The video appears here when the task has succeeded.");
  return h("video", { controls: true, preload: "metadata", src: url, class: "video", id: "player" });
}

function facts(record) {
  const r = record.response || {};
  const rows = [
    ["State", badge(taskState(record))], ["Created", when(record.created_at)],
    ["Started", when(record.started_at)], ["Finished", when(record.finished_at)],
    ["Action", (record.request && record.request.action) || "–"],
    ["Model", (record.request && record.request.model) || "kling-v1"],
    ["Video duration", r.duration ? `${r.duration} s` : "–"],
    ["Queue position", r.queue_position ?? "–"],
  ];
  if (r.error) rows.push(["Error", `${r.error.code}: ${r.error.message}`]);
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function callbackView(record) {
  const cb = record.callback;
  if (!cb) return h("p", { class: "muted" }, "No callback URL on this task.");
  return table(["URL", "State", "Attempts", "Last status", "Last error", "Delivered"],
    [[cb.url, cb.state, cb.attempts, cb.last_status ?? "–", cb.last_error ?? "–", when(cb.delivered_at)]]);
}

function deliveries(list, reload) {
  const redeliver = (id) => async () => { await admin("POST", `/callbacks/${encodeURIComponent(id)}/redeliver`); reload(); };
  return table(["Delivery", "Event", "State", "Attempts", "Last status", "Last error", ""],
    list.map((d) => [d.id.slice(0, 8), d.event, d.state, d.attempts, d.last_status ?? "–", d.last_error ?? "–",
      h("button", { type: "button", onclick: redeliver(d.id) }, "Redeliver")]), "No deliveries.");
}

export async function taskPage(main, taskId, asAdmin) {
  let record;
  let extra = null;
  if (asAdmin) {
    extra = await admin("GET", `/tasks/${encodeURIComponent(taskId)}`);
    record = extra.record;
  } else {
    record = await tasks({ action: "retrieve", id: taskId });
    if (!record || !record.id) {
      main.append(h("h1", {}, "No such task"), h("p", { class: "muted" }, "It does not exist, or it is not yours."));
      return null;
    }
  }
  const live = h("span", { class: "live muted", id: "live" });
  const parts = {
    video: h("div", {}, video(record)), facts: h("div", {}, facts(record)),
    callback: h("div", {}, callbackView(record)), raw: h("pre", { class: "record", id: "record" }),
  };
  const show = (next) => {
    const hadVideo = Boolean(record.response && record.response.video_url);
    record = next;
    if (!hadVideo) parts.video.replaceChildren(video(record));
    parts.facts.replaceChildren(facts(record));
    parts.callback.replaceChildren(callbackView(record));
    parts.raw.textContent = JSON.stringify(record, null, 2);
  };
  show(record);
  main.append(...[
    h("h1", {}, "Task ", h("code", {}, record.id), " ", live),
    h("div", { class: "grid2" }, h("div", { class: "card" }, parts.video), h("div", { class: "card" }, parts.facts)),
    h("div", { class: "card" }, h("h2", {}, "Callback"), parts.callback),
    asAdmin ? h("div", { class: "card" }, h("h2", {}, "Deliveries"), deliveries(extra.callbacks, () => location.reload()),
      h("p", { class: "muted" }, `Upstream account: ${extra.account ?? "none"} · attempts: ${extra.attempts}`)) : null,
    h("div", { class: "card" }, h("h2", {}, "Record"), parts.raw)].filter(Boolean));
  const state = taskState(record);
  if (asAdmin || state === "succeed" || state === "failed") return null;
  // Live: the event stream updates the page in place until the task has finished.
  const stop = new AbortController();
  live.textContent = "● live";
  follow(record.id, show, stop.signal)
    .then(() => { live.textContent = ""; })
    .catch((exc) => { if (!stop.signal.aborted) main.append(errorBox(exc)); });
  return () => stop.abort();
}
