// An account's history: one timeline, newest first, of its registrations,
// refresh runs, kicks, rejections, flood blocks, flapping, calls and CDRs and
// the parameter changes made meanwhile (GET api/accounts/{aor}/history).
// Reached by clicking an account anywhere in the console (#/history/<aor>).

import { api } from "../api.js";
import { badge, fmtClock, fmtTime, h, pageHeader, throttle } from "../ui.js";

const RANGES = [["1h", "Last hour"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]];
const ALERTS = new Set(["kick", "rejection", "flapping", "flood-block", "auth-failure"]);

export function currentAccount() {
  const match = location.hash.match(/^#\/history\/([^?]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function entryRow(entry) {
  const alert = ALERTS.has(entry.kind);
  const span = entry.end_time && entry.kind === "refreshes"
    ? `${fmtClock(entry.time)}–${fmtClock(entry.end_time)}` : fmtClock(entry.time);
  const ref = entry.event_id
    ? h("a", { href: entry.link, target: "_blank", rel: "noopener", class: "ref" }, `event #${entry.event_id}`)
    : h("a", { href: entry.link, target: "_blank", rel: "noopener", class: "ref" }, `CDR ${entry.cdr_id}`);
  return h("li", { class: `entry kind-${entry.kind} ${alert ? "alert" : ""}`,
    dataset: { kind: entry.kind, eventId: entry.event_id ?? "", cdrId: entry.cdr_id ?? "" } },
  h("time", { datetime: new Date(entry.time * 1000).toISOString(), title: fmtTime(entry.time) }, span),
  h("span", { class: "etype" }, badge(entry.kind, alert ? "alert" : ""),
    entry.count > 1 ? h("span", { class: "run" }, ` ×${entry.count}`) : null),
  h("span", { class: "what" }, entry.summary),
  h("span", { class: "ref-cell" }, ref));
}

export function mount(root, { stream }) {
  const aor = currentAccount();
  let range = "24h";
  let entries = [];
  let nextUntil = null;
  const input = h("input", { type: "search", id: "history-account", placeholder: "user@domain",
    "aria-label": "Account", value: aor, spellcheck: "false" });
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (value) location.hash = `#/history/${encodeURIComponent(value)}`;
  } }, input, h("button", { type: "submit" }, "Show"),
  h("select", { id: "history-range", "aria-label": "Time range", onchange: (e) => { range = e.target.value; load(); } },
    RANGES.map(([value, label]) => h("option", { value, selected: value === range }, label))));
  const count = h("span", { class: "count", id: "history-count" });
  const list = h("ol", { class: "timeline", id: "timeline" });
  const older = h("button", { id: "history-older", hidden: true, onclick: () => load(true) }, "Older…");
  root.append(
    pageHeader(aor ? `History of ${aor}` : "Account history",
      "Everything that happened to one account, newest first; each line links to its event or CDR."),
    form, count, list, older,
  );

  function render() {
    list.replaceChildren(...entries.map(entryRow));
    if (!entries.length) list.append(h("li", { class: "entry empty" }, aor ? "Nothing in this time range." : "Choose an account."));
    count.textContent = `${entries.length} entries`;
    older.hidden = nextUntil === null;
  }

  async function load(more = false) {
    if (!aor) { render(); return; }
    try {
      const data = await api(`accounts/${encodeURIComponent(aor)}/history`,
        { query: { since: range, until: more ? nextUntil : undefined } });
      entries = more ? [...entries, ...data.entries] : data.entries;
      nextUntil = data.truncated ? data.next_until : null;
      render();
    } catch (err) {
      list.replaceChildren(h("li", { class: "error" }, `Cannot read the history: ${err.message}`));
    }
  }

  const reload = throttle(() => load(), () => 1000);
  const off = stream.subscribe((event) => { if (event.account === aor || event.type === "param-changed") reload(); });
  const offStatus = stream.onStatus((state) => { if (state === "live") load(); });
  load();
  return () => { off(); offStatus(); };
}
