// Calls in progress, live, with hang-up.

import { api } from "../api.js";
import { aorCell, badge, debounce, fmtDuration, fmtTime, fmtWhen, h, modal, pageHeader, table, toast } from "../ui.js";

const CALL_EVENTS = new Set(["call-started", "call-answered", "call-ended", "replaced", "deleted"]);

export function mount(root, { stream }) {
  let calls = [];
  let loadedAt = performance.now();
  const holder = h("div", { id: "calls" }, h("p", { class: "muted loading" }, "Loading…"));
  const count = h("span", { class: "count" });
  root.append(
    pageHeader("Calls", "Calls in progress through the B2BUA. Hanging up sends BYE (or CANCEL) to both parties.", count),
    holder,
  );

  const duration = (c) => c.duration + (performance.now() - loadedAt) / 1000;

  const columns = [
    { label: "Caller", class: "strong", cell: (c) => aorCell(c.caller) },
    { label: "Callee", class: "strong", cell: (c) => aorCell(c.callee) },
    { label: "State", cell: (c) => badge(c.state, c.state === "answered" ? "ok" : "") },
    { label: "Started", class: "nowrap", cell: (c) => h("time", { title: fmtTime(c.start) }, fmtWhen(c.start)) },
    {
      label: "Duration", class: "nowrap",
      cell: (c) => h("span", { dataset: { duration: c.id } }, fmtDuration(duration(c))),
    },
    { label: "Caller source", class: "mono", cell: (c) => c.caller_source || "" },
    { label: "Callee contact", class: "mono wrap", cell: (c) => c.callee_contact || "" },
    { label: "Call id", class: "mono small", cell: (c) => c.id },
    {
      label: "", class: "row-actions",
      cell: (c) => h("button", { class: "danger small", onclick: () => hangUp(c) }, "Hang up"),
    },
  ];

  function render() {
    count.textContent = `${calls.length} in progress`;
    holder.replaceChildren(table(columns, calls, {
      empty: "No call in progress.", rowAttrs: (c) => ({ dataset: { id: c.id } }),
    }));
  }

  async function load() {
    try {
      calls = await api("calls");
      loadedAt = performance.now();
      render();
    } catch (err) {
      holder.replaceChildren(h("p", { class: "error" }, `Cannot read calls: ${err.message}`));
    }
  }
  const reload = debounce(load, 100);

  async function hangUp(call) {
    const choice = await modal({
      title: "Hang up call",
      body: h("p", {}, `End the call ${call.caller} → ${call.callee}`, call.answer ? ` (up ${fmtDuration(duration(call))})` : "", "?"),
      actions: [{ label: "Hang up", value: "yes", kind: "danger" }],
    });
    if (!choice) return;
    try {
      await api(`calls/${encodeURIComponent(call.id)}`, { method: "DELETE" });
      toast(`Call ${call.caller} → ${call.callee} ended`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    load();
  }

  function tick() {
    for (const el of holder.querySelectorAll("[data-duration]")) {
      const call = calls.find((c) => c.id === el.dataset.duration);
      if (call) el.textContent = fmtDuration(duration(call));
    }
  }

  const off = stream.subscribe((event) => { if (CALL_EVENTS.has(event.type)) reload(); });
  const offStatus = stream.onStatus((state) => { if (state === "live") reload(); });
  const timer = setInterval(tick, 1000);
  load();
  return () => { off(); offStatus(); clearInterval(timer); };
}
