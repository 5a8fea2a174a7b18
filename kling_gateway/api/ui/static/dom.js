// Building the page from data without ever parsing it as HTML: every value is a text node.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function when(epoch) {
  if (epoch === undefined || epoch === null) return "–";
  return new Date(epoch * 1000).toLocaleString(undefined, { hour12: false });
}

export function taskState(record) {
  return (record.response && record.response.state) || "pending";
}

export function badge(state) {
  return h("span", { class: `badge ${state}`, "data-state": state }, state);
}

export function errorBox(error) {
  const trace = error.traceId ? ` (trace id ${error.traceId})` : "";
  return h("p", { class: "error", role: "alert" }, `${error.code || "error"}: ${error.message}${trace}`);
}

export function table(columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

export function field(label, input, help) {
  return h("label", { class: "field" }, h("span", {}, label), input, help ? h("small", {}, help) : null);
}

export function select(name, options, value = "", blank = null) {
  const opts = blank === null ? [] : [h("option", { value: "" }, blank)];
  for (const option of options) {
    opts.push(h("option", { value: option, selected: option === value }, option));
  }
  return h("select", { name }, opts);
}

export function pager(offset, limit, count, go) {
  const last = Math.min(offset + limit, count);
  return h("div", { class: "pager" },
    h("button", { type: "button", disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)) }, "‹ Newer"),
    h("span", { class: "muted" }, count ? `${offset + 1}–${last} of ${count}` : "0 tasks"),
    h("button", { type: "button", disabled: last >= count, onclick: () => go(offset + limit) }, "Older ›"));
}
