// Dashboard: the last hour as live charts (registered bindings, REGISTERs/s,
// kicks, rejections, flood blocks, calls up) and the accounts kicked most.
// One read of api/dashboard at load; then `stats` frames of the event stream
// (a sample every few seconds) and, between them, the events themselves move
// the newest point so a kick shows at once.

import { api } from "../api.js";
import { drawChart } from "../chart.js";
import { aorCell, h, pageHeader, table, throttle } from "../ui.js";

const SERIES = [
  { key: "bindings", title: "Registered bindings", style: "line", gauge: true },
  { key: "registers_per_s", title: "REGISTERs / s", style: "line", gauge: true },
  { key: "kicks", title: "Kicks", style: "bars", alert: true },
  { key: "rejections", title: "Rejections", style: "bars", alert: true },
  { key: "flood_blocks", title: "Flood blocks", style: "bars", alert: true },
  { key: "calls", title: "Calls up", style: "line", gauge: true },
];
// Events that answer a REGISTER (challenges are not events: the sample counts them).
const REGISTER_EVENTS = new Set(["registered", "refreshed", "same-device", "unregistered", "rejected", "auth-failed"]);
const GONE = new Set(["unregistered", "expired", "deleted", "replaced"]);

const now = () => Date.now() / 1000;

export function mount(root, { stream }) {
  let span = 3600;
  let interval = 5;
  let samples = [];
  let live = null; // the newest point, moved by events until the next sample
  const kicked = new Map();
  const cards = SERIES.map((s) => {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.classList.add("chart", `chart-${s.style}`);
    const value = h("span", { class: "chart-value" }, "–");
    const card = h("section", { class: `chart-card ${s.alert ? "alert" : ""}`, dataset: { series: s.key } },
      h("header", {}, h("h2", {}, s.title), value), svg);
    return { ...s, svg, value, card };
  });
  const topBox = h("div", { class: "top-kicked", id: "top-kicked" });
  const status = h("span", { class: "count", id: "dashboard-status" }, "Loading…");
  root.append(
    pageHeader("Dashboard", "The last hour, live. Click an account for its history.", status),
    h("div", { class: "charts" }, cards.map((c) => c.card)),
    h("section", { class: "panel" }, h("h2", {}, "Accounts kicked most (last hour)"), topBox),
  );

  function points(key) {
    const all = live ? [...samples, live] : samples;
    return all.map((p) => ({ time: p.time, value: p[key] ?? 0 }));
  }

  function render() {
    const to = now();
    // A server up for less than the span: the axis starts at its first sample
    // (at least a minute back), so a young server's charts are not a dot at the edge.
    const from = Math.max(to - span, Math.min((samples[0]?.time ?? to) - interval, to - 60));
    for (const card of cards) {
      const pts = points(card.key);
      drawChart(card.svg, pts, { from, to, step: interval, style: card.style, label: card.title });
      const shown = pts.filter((p) => p.time >= to - span);
      const value = card.gauge
        ? (shown.length ? shown[shown.length - 1].value : 0)
        : shown.reduce((sum, p) => sum + p.value, 0);
      card.value.textContent = card.gauge ? String(value) : `${value} in the last hour`;
      card.value.dataset.value = String(value);
      card.card.classList.toggle("active", !card.gauge && value > 0);
    }
    renderTop();
  }
  const redraw = throttle(render, () => 250);

  function renderTop() {
    const rows = [...kicked.entries()].map(([account, kicks]) => ({ account, kicks }))
      .sort((a, b) => b.kicks - a.kicks || a.account.localeCompare(b.account)).slice(0, 10);
    topBox.replaceChildren(table([
      { label: "Account", class: "strong", cell: (r) => aorCell(r.account) },
      { label: "Kicks", class: "num", cell: (r) => String(r.kicks) },
    ], rows, { empty: "No kick in the last hour.", rowAttrs: (r) => ({ dataset: { account: r.account } }) }));
  }

  function freshLive() {
    const last = samples[samples.length - 1] || {};
    return { time: now(), since: last.time ?? now(), bindings: last.bindings ?? 0, calls: last.calls ?? 0,
      registers: 0, registers_per_s: last.registers_per_s ?? 0, kicks: 0, rejections: 0, flood_blocks: 0 };
  }

  function onEvent(event) {
    if (!live) return;
    const t = event.type;
    live.time = now();
    if (t === "registered") live.bindings += 1;
    if (GONE.has(t)) live.bindings = Math.max(0, live.bindings - 1);
    if (t === "replaced") {
      live.kicks += 1;
      if (event.account) kicked.set(event.account, (kicked.get(event.account) || 0) + 1);
    }
    if (t === "rejected") live.rejections += 1;
    if (t === "flood-blocked") live.flood_blocks += 1;
    if (t === "call-started") live.calls += 1;
    if (t === "call-ended" && event.details?.call) live.calls = Math.max(0, live.calls - 1);
    if (REGISTER_EVENTS.has(t)) {
      live.registers += 1;
      live.registers_per_s = Math.round((live.registers / Math.max(1, live.time - live.since)) * 100) / 100;
    }
    redraw();
  }

  function onSample(point) {
    samples.push(point);
    const cutoff = now() - span - 60;
    while (samples.length && samples[0].time < cutoff) samples.shift();
    live = freshLive();
    redraw();
  }

  async function load() {
    try {
      const data = await api("dashboard");
      span = data.span;
      interval = data.interval;
      samples = data.samples;
      kicked.clear();
      for (const row of data.top_kicked) kicked.set(row.account, row.kicks);
      live = freshLive();
      status.textContent = `a sample every ${data.interval} s`;
      render();
    } catch (err) {
      status.textContent = `Cannot read the dashboard: ${err.message}`;
    }
  }

  const offEvents = stream.subscribe(onEvent);
  const offStats = stream.onStats(onSample);
  const offStatus = stream.onStatus((state) => { if (state === "live") load(); });
  const ticker = setInterval(redraw, 5000); // the time axis moves on when nothing happens
  load();
  return () => { offEvents(); offStats(); offStatus(); clearInterval(ticker); };
}
