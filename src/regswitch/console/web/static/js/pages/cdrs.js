// CDRs: filter by account, end reason and time; download the same selection as CSV.

import { api, apiUrl, authHeaders, getToken } from "../api.js";
import { aorCell, badge, debounce, field, fmtTime, fmtWhen, h, localInputToEpoch, pageHeader, table, toast } from "../ui.js";

const REASONS = [
  "normal", "busy", "no-answer", "cancelled", "rejected", "not-registered",
  "registration-replaced", "registration-deleted", "admin-hangup", "timeout", "error",
  "node-failure",
];
const SYSTEM_ENDS = new Set([
  "registration-replaced", "registration-deleted", "admin-hangup", "timeout", "error", "node-failure",
]);

export function mount(root, { stream }) {
  const account = h("input", { type: "search", name: "account", placeholder: "user@domain", id: "cdr-account" });
  const reason = h("select", { name: "reason", id: "cdr-reason" },
    h("option", { value: "" }, "any"), REASONS.map((r) => h("option", { value: r }, r)));
  const since = h("input", { type: "datetime-local", name: "since", step: "1", id: "cdr-since" });
  const until = h("input", { type: "datetime-local", name: "until", step: "1", id: "cdr-until" });
  const limit = h("input", { type: "number", name: "limit", min: "1", max: "100000", value: "100", id: "cdr-limit" });
  const csv = h("a", { class: "button", id: "cdr-csv", download: "cdrs.csv", onclick: (e) => downloadWithToken(e) }, "Download CSV");
  const form = h("form", { class: "filters form-grid", onsubmit: (e) => { e.preventDefault(); load(); } },
    field("Account", account), field("End reason", reason), field("Since", since), field("Until", until),
    field("Limit", limit),
    h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "primary" }, "Search"), csv));
  form.addEventListener("input", () => updateCsvLink());
  const holder = h("div", { id: "cdrs" }, h("p", { class: "muted loading" }, "Loading…"));
  root.append(pageHeader("CDRs", "A record for every call attempt: who, when, how long, and why it ended."), form, holder);

  function query() {
    return {
      account: account.value.trim(), reason: reason.value,
      since: localInputToEpoch(since.value), until: localInputToEpoch(until.value),
      limit: limit.value || "100",
    };
  }

  function updateCsvLink() {
    csv.href = apiUrl("cdrs", { ...query(), format: "csv" });
  }

  // A plain link cannot carry the bearer token: with a token, fetch the CSV
  // and hand the browser a blob instead.
  async function downloadWithToken(event) {
    if (!getToken()) return;
    event.preventDefault();
    try {
      const response = await fetch(csv.href, { headers: authHeaders() });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const url = URL.createObjectURL(await response.blob());
      const a = h("a", { href: url, download: "cdrs.csv" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      toast(`CSV download failed: ${err.message}`, "error");
    }
  }

  const columns = [
    { label: "Start", class: "nowrap", cell: (r) => h("time", { title: fmtTime(r.start) }, fmtWhen(r.start)) },
    { label: "Caller", class: "strong", cell: (r) => aorCell(r.caller) },
    { label: "Callee", class: "strong", cell: (r) => aorCell(r.callee) },
    { label: "Answered", class: "nowrap", cell: (r) => (r.answer ? h("time", { title: fmtTime(r.answer) }, fmtWhen(r.answer)) : "—") },
    { label: "Billable (s)", class: "num", cell: (r) => String(r.billable_seconds) },
    { label: "SIP", class: "num", cell: (r) => String(r.final_code || "") },
    { label: "End reason", cell: (r) => badge(r.end_reason, SYSTEM_ENDS.has(r.end_reason) ? "warn" : "") },
    { label: "Ended by", cell: (r) => r.end_direction },
    { label: "Call id", class: "mono small", cell: (r) => r.id },
  ];

  async function load() {
    updateCsvLink();
    try {
      const rows = await api("cdrs", { query: query() });
      holder.replaceChildren(
        h("p", { class: "count" }, `${rows.length} record${rows.length === 1 ? "" : "s"}`),
        table(columns, rows, { empty: "No CDR matches.", rowAttrs: (r) => ({ dataset: { id: r.id } }) }));
    } catch (err) {
      holder.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
    }
  }
  const reload = debounce(load, 300);

  // New CDRs show up while the operator watches, unless a fixed window is set.
  const off = stream.subscribe((event) => {
    if (event.type === "call-ended" && !until.value) reload();
  });
  load();
  return () => off();
}
