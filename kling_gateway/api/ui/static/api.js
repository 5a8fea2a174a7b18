// The gateway's HTTP API as the dashboard uses it. The token lives in this tab's
// sessionStorage only and goes out as `authorization: Bearer`, never in a URL or a cookie.

const TOKEN = "kling-gateway.token";
const ADMIN = "kling-gateway.admin";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  get admin() { return sessionStorage.getItem(ADMIN) === "1"; },
  save(token, admin) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(ADMIN, admin ? "1" : "0");
  },
  clear() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(ADMIN); },
};

export class ApiError extends Error {
  constructor(status, code, message, traceId) {
    super(message);
    Object.assign(this, { status, code, traceId });
  }
}

export async function call(method, path, body, token = session.token) {
  const headers = { authorization: `Bearer ${token}`, accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    throw new ApiError(0, "network", `the gateway did not answer (${exc.message})`, null);
  }
  const text = await response.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
  if (!response.ok) {
    const error = (doc && doc.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || text || response.statusText, (doc && doc.trace_id) || response.headers.get("x-trace-id"));
  }
  return doc;
}

export const tasks = (body) => call("POST", "/kling/tasks", body);
export const createVideo = (body) => call("POST", "/kling/videos", body);
export const admin = (method, path, body) => call(method, `/admin/v1${path}`, body);

let openapi = null;
/** The OpenAPI document (the create form takes its choices from it, so they never drift). */
export async function schema() {
  if (openapi === null) {
    const response = await fetch("/openapi.json");
    openapi = await response.json();
  }
  return openapi;
}

/** Sign in: the token must list tasks; an admin token also reads /admin/v1/users. */
export async function signIn(token) {
  await call("POST", "/kling/tasks", { action: "retrieve_batch", limit: 1 }, token);
  let isAdmin = false;
  try {
    await call("GET", "/admin/v1/users", undefined, token);
    isAdmin = true;
  } catch (exc) {
    if (exc.status !== 403) throw exc;
  }
  session.save(token, isAdmin);
  return isAdmin;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow a task's Server-Sent Events (GET /kling/tasks/{id}/events) with fetch, so that the
 * token stays in a header (EventSource cannot send one). Calls onRecord with each record until
 * the task is finished or signal aborts; reconnects with Last-Event-ID when the stream ends.
 */
export async function follow(taskId, onRecord, signal) {
  let last = null;
  while (!signal.aborted) {
    const headers = { authorization: `Bearer ${session.token}`, accept: "text/event-stream" };
    if (last !== null) headers["last-event-id"] = String(last);
    let response;
    try {
      response = await fetch(`/kling/tasks/${encodeURIComponent(taskId)}/events`, { headers, signal });
    } catch {
      if (signal.aborted) return;
      await sleep(2000);
      continue;
    }
    if (response.status === 204) return; // finished, and its last event was seen
    if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, "the event stream failed", null);
    const finished = await readEvents(response, (id, record) => { last = id; onRecord(record); });
    if (finished) return;
    await sleep(500);
  }
}

async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseEvent(block);
      if (event.data === undefined) continue; // a ": ping"
      const record = JSON.parse(event.data);
      onEvent(Number(event.id), record);
      const state = record.response && record.response.state;
      if (state === "succeed" || state === "failed") return true;
    }
  }
}

function parseEvent(block) {
  const event = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const key = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    event[key] = event[key] === undefined ? value : `${event[key]}\n${value}`;
  }
  return event;
}
