// Pictures drawn as inline SVG (no chart library): slots in use per account, and bars by day.

const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

/** One bar per account: its slots in use over its max concurrency. */
export function slotBars(accounts) {
  const row = 34, left = 150, width = 520, top = 24;
  const svg = el("svg", { viewBox: `0 0 ${left + width + 90} ${top + row * accounts.length + 8}`, class: "chart", role: "img", id: "slots" });
  svg.append(el("title", {}, "Slots in use per account"));
  svg.append(el("text", { x: left, y: 14, class: "axis" }, "slots in use / max concurrency"));
  accounts.forEach((a, i) => {
    const y = top + i * row;
    const used = Math.min(a.in_flight, a.max_concurrency);
    const share = a.max_concurrency ? used / a.max_concurrency : 0;
    const kind = a.state !== "enabled" ? "off" : share >= 1 ? "full" : "ok";
    svg.append(el("text", { x: left - 10, y: y + 17, "text-anchor": "end", class: "label" }, a.name));
    svg.append(el("rect", { x: left, y, width, height: 24, rx: 4, class: "track" }));
    svg.append(el("rect", { x: left, y, width: Math.max(share * width, used ? 3 : 0), height: 24, rx: 4, class: `bar ${kind}`, "data-account": a.name, "data-used": used }));
    for (let s = 1; s < a.max_concurrency && a.max_concurrency <= 50; s++) {
      const x = left + (s / a.max_concurrency) * width;
      svg.append(el("line", { x1: x, x2: x, y1: y, y2: y + 24, class: "tick" }));
    }
    svg.append(el("text", { x: left + width + 10, y: y + 17, class: "value" }, `${a.in_flight}/${a.max_concurrency}${a.state !== "enabled" ? " off" : ""}`));
  });
  return svg;
}

/** Stacked bars: ``days`` in order, each with ``{key: value}``; one colour per key. */
export function stackedBars(days, keys, unit) {
  const height = 200, left = 50, barGap = 6, width = Math.max(480, days.length * 40);
  const totals = days.map((d) => keys.reduce((sum, k) => sum + (d.values[k] || 0), 0));
  const max = Math.max(1, ...totals);
  const svg = el("svg", { viewBox: `0 0 ${left + width + 160} ${height + 50}`, class: "chart", role: "img", id: "usage-chart" });
  svg.append(el("title", {}, `Usage by day (${unit})`));
  svg.append(el("line", { x1: left, x2: left + width, y1: height, y2: height, class: "tick" }));
  svg.append(el("text", { x: left - 6, y: 12, "text-anchor": "end", class: "axis" }, Math.round(max)));
  svg.append(el("text", { x: left - 6, y: height, "text-anchor": "end", class: "axis" }, 0));
  const step = width / Math.max(1, days.length);
  const every = Math.ceil(44 / step); // a date label takes about 40 units
  days.forEach((d, i) => {
    let y = height;
    keys.forEach((k, j) => {
      const v = d.values[k] || 0;
      const h = (v / max) * (height - 10);
      if (h > 0) svg.append(el("rect", { x: left + i * step + barGap / 2, y: y - h, width: step - barGap, height: h, class: `series s${j % 8}` }));
      y -= h;
    });
    if ((days.length - 1 - i) % every === 0) {
      svg.append(el("text", { x: left + i * step + step / 2, y: height + 16, "text-anchor": "middle", class: "axis" }, d.day.slice(5)));
    }
  });
  keys.forEach((k, j) => {
    svg.append(el("rect", { x: left + width + 20, y: 10 + j * 20, width: 12, height: 12, class: `series s${j % 8}` }));
    svg.append(el("text", { x: left + width + 38, y: 20 + j * 20, class: "label" }, k));
  });
  return svg;
}
