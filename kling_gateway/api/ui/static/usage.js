// Credits: the caller's balance and usage (GET /kling/usage), everyone's usage for an operator
// (GET /admin/v1/usage), charted by day (stacked by model) and tabled by model.

import { admin, call } from "./api.js";
import { field, h, select, table } from "./dom.js";
import { stackedBars } from "./svg.js";

const DAY = 86400;
const SPANS = ["7", "14", "30", "90"];

function days(since) {
  const out = [];
  for (let t = Math.floor(since / DAY) * DAY; t <= Date.now() / 1000; t += DAY) {
    out.push(new Date(t * 1000).toISOString().slice(0, 10));
  }
  return out;
}

/** The report by model, then each model's report by day: the chart's series. */
async function charted(report, since) {
  const byModel = await report({ by: "model", since });
  const models = byModel.rows.map((r) => r.key).filter((k, i, all) => all.indexOf(k) === i);
  const series = await Promise.all(models.map((model) => report({ by: "day", since, model })));
  const perDay = days(since).map((day) => ({ day, values: {} }));
  series.forEach((one, i) => {
    for (const row of one.rows) {
      const slot = perDay.find((d) => d.day === row.key);
      if (slot) slot.values[models[i]] = (slot.values[models[i]] || 0) + row.credits;
    }
  });
  return { byModel, models, perDay };
}

function modelTable(byModel) {
  const rows = byModel.rows.map((r) => [r.user, r.key, r.tasks, r.credits, r.failed, r.refunded]);
  const t = byModel.total;
  if (rows.length) rows.push([h("strong", {}, "total"), "", t.tasks, t.credits, t.failed, t.refunded]);
  return table(["User", "Model", "Tasks", "Credits", "Failed (not charged)", "Refunded"], rows, "No usage in this span.");
}

async function usageCards(main, query, report, base) {
  const span = SPANS.includes(query.get("days")) ? query.get("days") : "14";
  const since = Date.now() / 1000 - Number(span) * DAY;
  const form = h("form", { class: "filters", id: "usage-filters" },
    base.startsWith("#/admin") ? field("User", h("input", { name: "user", value: query.get("user") || "", placeholder: "everyone" })) : null,
    field("Last days", select("days", SPANS, span)), h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = `${base}?${q}`;
  });
  const { byModel, models, perDay } = await charted(report, since);
  main.append(form,
    h("div", { class: "card" }, h("h2", {}, "Credits by day"), models.length
      ? stackedBars(perDay, models, "credits") : h("p", { class: "muted" }, "No usage in this span.")),
    h("div", { class: "card", id: "usage-by-model" }, h("h2", {}, "By model"), modelTable(byModel)));
}

function balanceCard(app) {
  if (!app) return h("p", { class: "muted" }, "No application.");
  const facts = [
    ["Balance", app.metered ? app.balance : "unmetered"], ["Held by running tasks", app.held],
    ["Available", app.available ?? "unlimited"], ["Tasks in flight", app.in_flight],
    ["Max in flight", app.max_in_flight ?? "no limit"], ["State", app.disabled ? "disabled" : "enabled"],
  ];
  return h("dl", { class: "facts big", id: "balance" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, v)]));
}

export async function ownUsagePage(main, query) {
  const own = (params) => call("GET", `/kling/usage?${new URLSearchParams(params)}`);
  const first = await own({});
  main.append(h("h1", {}, "Usage and balance"), h("div", { class: "card" }, balanceCard(first.application)));
  await usageCards(main, query, async (params) => (await own(params)).usage, "#/usage");
}

export async function adminUsagePage(main, query) {
  const user = query.get("user");
  const report = (params) => admin("GET", `/usage?${new URLSearchParams(user ? { ...params, user } : params)}`);
  main.append(h("h1", {}, user ? `Usage of ${user}` : "Usage"));
  await usageCards(main, query, report, "#/admin/usage");
}
