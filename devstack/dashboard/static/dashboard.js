// The page: one EventSource, a snapshot a second, five uPlot charts, the tiles, two tables, and
// the Logs Insights query box.
"use strict";

const HEIGHT = 180;
const COLOURS = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"];

function makeChart(id, labels, yLabel) {
  const el = document.getElementById(id);
  const series = [{}].concat(labels.map((label, i) => ({
    label, stroke: COLOURS[i], width: 1.5, spanGaps: false,
  })));
  const opts = {
    width: el.clientWidth || 460, height: HEIGHT, series,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{}, { label: yLabel, size: 50 }],
    legend: { live: false },
  };
  return new uPlot(opts, [[]].concat(labels.map(() => [])), el);
}

const charts = {
  queue: makeChart("chart-queue", ["visible", "in flight", "DLQ"], "messages"),
  orders: makeChart("chart-orders", ["accepted/s", "paid/s"], "orders/s"),
  api: makeChart("chart-api", ["p50", "p99"], "ms"),
  queueMs: makeChart("chart-queue-ms", ["p50", "p99"], "ms"),
  busy: makeChart("chart-busy", ["busy slots"], "slots"),
};

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  }));
}

function render(snap) {
  const s = snap.series;
  charts.queue.setData([s.t, s.visible, s.in_flight, s.dlq]);
  charts.orders.setData([s.t, s.accepted, s.paid]);
  charts.api.setData([s.t, s.api_p50, s.api_p99]);
  charts.queueMs.setData([s.t, s.queue_p50, s.queue_p99]);
  charts.busy.setData([s.t, s.busy]);

  const t = snap.totals;
  setText("tile-accepted-rate", fmt(t.accepted_per_s, 1));
  setText("tile-accepted-total", fmt(t.accepted, 0));
  setText("tile-paid-rate", fmt(t.paid_per_s, 1));
  setText("tile-paid-total", fmt(t.paid, 0));
  setText("tile-api-p50", fmt(t.api_p50, 1));
  setText("tile-api-p99", fmt(t.api_p99, 1));
  setText("tile-queue-p50", fmt(t.queue_p50, 0));
  setText("tile-queue-p99", fmt(t.queue_p99, 0));
  setText("tile-busy", fmt(t.busy, 1));
  setText("tile-slots", fmt(t.slots, 0));
  setText("tile-visible", fmt(t.visible, 0));
  setText("tile-in-flight", fmt(t.in_flight, 0));
  setText("tile-dlq", fmt(t.dlq, 0));
  setText("tile-failures", fmt(t.failures, 0));
  setText("tile-failures-final", fmt(t.failures_final, 0));
  setText("tile-failures-retried", fmt(t.failures_retried, 0));
  setText("tile-failures-client", fmt(t.failures_client, 0));
  setText("tile-failures-error", fmt(t.failures_error, 0));
  setText("tile-charged", fmt(snap.ledger.charged, 0));
  setText("tile-ledger-paid", fmt(snap.ledger.paid, 0));
  setText("tile-charged-twice", fmt(snap.ledger.charged_twice.length, 0));
  setText("tile-pending", fmt(snap.pending.count, 0));
  setText("tile-oldest-pending", snap.pending.oldest_order_id === null ? "none"
    : `${fmt(snap.pending.oldest_age_s, 0)} s`);
  document.getElementById("tile-oldest-pending").title = snap.pending.oldest_order_id || "";
  fillTable("latency-by-route", snap.routes.map((r) => [
    [r.route], [r.mode], [fmt(r.requests, 0)], [fmt(r.p50, 1)], [fmt(r.p99, 1)], [fmt(r.max, 1)],
  ]));

  fillTable("failures-by-event", snap.failures.by_event.map((f) => [
    [f.service], [f.event], [f.code], [fmt(f.count, 0)],
  ]));
  fillTable("failures-latest", snap.failures.latest.map((f) => [
    [new Date(f.at * 1000).toLocaleTimeString("en-GB")], [f.service], [f.event],
    [f.order_id || ""], [f.reason, "reason"],
  ]));
  window.dashboardSnapshot = snap;
}

window.addEventListener("resize", () => {
  for (const chart of Object.values(charts)) {
    chart.setSize({ width: chart.root.parentElement.clientWidth, height: HEIGHT });
  }
});

const status = document.getElementById("status");
const source = new EventSource("events");
source.onmessage = (event) => {
  render(JSON.parse(event.data));
  status.textContent = "live";
  status.className = "status live";
};
source.onerror = () => {
  status.textContent = "reconnecting…";
  status.className = "status";
};
window.dashboardCharts = charts;

// The query box: POST query, draw its rows; the shipped queries fill the text when picked.
const queryForm = document.getElementById("query-form");
const queryText = document.getElementById("query-text");
const queryStatus = document.getElementById("query-status");
const shipped = document.getElementById("query-shipped");

fetch("queries.json").then((r) => r.json()).then((queries) => {
  for (const [name, text] of Object.entries(queries)) {
    const option = document.createElement("option");
    option.value = text;
    option.textContent = name;
    shipped.append(option);
  }
});
shipped.addEventListener("change", () => {
  if (shipped.value) queryText.value = shipped.value;
});

function showResult(answer) {
  const head = document.querySelector("#query-result thead");
  const tr = document.createElement("tr");
  for (const column of answer.columns) {
    const th = document.createElement("th");
    th.textContent = column;
    tr.append(th);
  }
  head.replaceChildren(tr);
  fillTable("query-result", answer.rows.map((row) => answer.columns.map((c) => [row[c] ?? ""])));
  const stats = answer.statistics;
  queryStatus.textContent = `${answer.rows.length} rows; ${stats.recordsMatched ?? 0} records ` +
    `matched, ${stats.recordsScanned ?? 0} scanned`;
}

queryForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  queryStatus.textContent = "running…";
  queryStatus.className = "query-status";
  const body = {
    query: queryText.value,
    since: document.getElementById("query-since").value,
    group: document.getElementById("query-group").value,
  };
  try {
    const response = await fetch("query", { method: "POST", body: JSON.stringify(body) });
    const answer = await response.json();
    if (!response.ok) {
      queryStatus.textContent = answer.error.message;
      queryStatus.className = "query-status error";
      return;
    }
    showResult(answer);
  } catch (err) {
    queryStatus.textContent = String(err);
    queryStatus.className = "query-status error";
  }
});
