// Registrations: every current binding, live. A refresh or a reachability
// change patches its row from the event; anything else re-reads the list
// (throttled harder as the list grows, so a big node's refresh rate cannot
// keep the browser busy). "Expires in" counts down locally between reads.

import { api } from "../api.js";
import {
  aorCell, badge, fmtDuration, fmtTime, fmtWhen, h, modal, pageHeader, table, throttle, toast,
} from "../ui.js";

// Event types that change the registration list (or a row of it).
const REGISTRATION_EVENTS = new Set([
  "registered", "refreshed", "same-device", "unregistered", "expired", "replaced",
  "deleted", "reachability",
  // the Calls column
  "call-started", "call-ended",
]);

// Rendering tens of thousands of rows helps nobody: show the first ones and
// let the filters narrow the rest.
const MAX_ROWS = 500;

const nowSeconds = () => performance.now() / 1000;

export function mount(root, { stream }) {
  let rows = [];
  let byId = new Map(); // binding id -> row
  let callsOf = new Map(); // binding id -> calls in progress on it
  // account -> its calls in progress placed by a device that is not registered
  // (an IP-authenticated desk phone, a second softphone): no binding holds them
  let unregisteredCallsOf = new Map();
  const filters = { account: "", ip: "" };

  const accountInput = h("input", {
    type: "search", placeholder: "Filter by account", "aria-label": "Filter by account",
    oninput: (e) => { filters.account = e.target.value.trim().toLowerCase(); render(); },
  });
  const ipInput = h("input", {
    type: "search", placeholder: "Filter by IP", "aria-label": "Filter by IP", inputmode: "decimal",
    oninput: (e) => { filters.ip = e.target.value.trim(); render(); },
  });
  const count = h("span", { class: "count", id: "registrations-count" });
  const holder = h("div", { id: "registrations" }, h("p", { class: "muted loading" }, "Loading…"));
  root.append(
    pageHeader("Registrations", "Every registered contact, updated live as devices register, refresh, move or are replaced."),
    h("div", { class: "filters" }, accountInput, ipInput, count),
    holder,
  );

  function visible() {
    return rows.filter((r) =>
      (!filters.account || r.account.toLowerCase().includes(filters.account))
      && (!filters.ip || r.source_ip.includes(filters.ip) || r.contact.includes(filters.ip)));
  }

  // Local clock deadline: immune to a skew between browser and server clocks.
  function expiresIn(row) {
    return Math.max(0, row.deadline - nowSeconds());
  }

  function expiresCell(row) {
    const left = expiresIn(row);
    return h("span", { class: `countdown ${left < 60 ? "soon" : ""}`, dataset: { expires: row.id } },
      left > 0 ? fmtDuration(left) : "expiring");
  }

  const columns = [
    { label: "Account", class: "strong", cell: (r) => aorCell(r.account) },
    { label: "Contact", class: "mono wrap", cell: (r) => r.contact },
    { label: "Source", class: "mono", cell: (r) => `${r.source_ip}:${r.source_port}` },
    { label: "Transport", cell: (r) => r.transport.toUpperCase() },
    { label: "User-Agent", class: "words", cell: (r) => r.user_agent || "—" },
    {
      label: "Registered", class: "nowrap",
      cell: (r) => h("time", { title: `registered ${fmtTime(r.registered_at)}, refreshed ${fmtTime(r.refreshed_at)}` }, fmtWhen(r.registered_at)),
    },
    { label: "Expires in", class: "nowrap", cell: expiresCell },
    {
      label: "Calls", class: "num",
      cell: (r) => {
        const n = (callsOf.get(r.id) || []).length;
        const off = (unregisteredCallsOf.get(r.account) || []).length;
        return h("span", { class: "calls-count", dataset: { calls: String(n), unregistered: String(off) } },
          n ? badge(String(n), "ok") : "0",
          off ? [" ", h("span", {
            class: "badge badge-warn", title: `${off} call${off === 1 ? "" : "s"} of ${r.account} placed by a device that is not registered`,
          }, `+${off} unregistered`)] : null);
      },
    },
    {
      label: "Reachability",
      cell: (r) => (r.reachable ? badge("reachable", "ok") : badge("unreachable", "bad")),
    },
    {
      label: "", class: "row-actions",
      cell: (r) => h("button", { class: "danger small", onclick: () => remove(r), "aria-label": `Delete registration ${r.contact}` }, "Delete"),
    },
  ];

  function render() {
    const matching = visible();
    const shown = matching.slice(0, MAX_ROWS);
    count.textContent = matching.length === rows.length
      ? `${rows.length} registration${rows.length === 1 ? "" : "s"}`
      : `${matching.length} of ${rows.length}`;
    if (shown.length < matching.length) count.textContent += ` (first ${shown.length} shown: filter to narrow)`;
    // an account with no registration at all has no row to count its calls on
    const off = [...unregisteredCallsOf.values()].reduce((sum, calls) => sum + calls.length, 0);
    if (off) count.textContent += ` · ${off} call${off === 1 ? "" : "s"} from devices not registered`;
    holder.replaceChildren(table(columns, shown, {
      empty: rows.length ? "No registration matches the filter." : "No device is registered.",
      rowAttrs: (r) => ({ dataset: { id: r.id, account: r.account }, class: r.reachable ? "" : "row-bad" }),
    }));
  }

  function tick() {
    for (const el of holder.querySelectorAll("[data-expires]")) {
      const row = byId.get(el.dataset.expires);
      if (!row) continue;
      const left = expiresIn(row);
      el.textContent = left > 0 ? fmtDuration(left) : "expiring";
      el.classList.toggle("soon", left < 60);
    }
  }

  let loading = null;
  async function load() {
    // One read at a time; a burst of events while reading gets one more read.
    if (loading) { loading.again = true; return; }
    loading = { again: false };
    holder.dataset.settled = "false";
    try {
      const [data, calls] = await Promise.all([api("registrations"), api("calls")]);
      const now = nowSeconds();
      rows = data;
      for (const row of rows) row.deadline = now + row.expires_in;
      byId = new Map(rows.map((r) => [r.id, r]));
      callsOf = new Map();
      unregisteredCallsOf = new Map();
      for (const call of calls) {
        for (const id of call.bindings || []) callsOf.set(id, [...(callsOf.get(id) || []), call]);
        if (!call.caller_binding) {
          unregisteredCallsOf.set(call.caller, [...(unregisteredCallsOf.get(call.caller) || []), call]);
        }
      }
      render();
    } catch (err) {
      holder.replaceChildren(h("p", { class: "error" }, `Cannot read registrations: ${err.message}`));
    } finally {
      const again = loading.again;
      loading = null;
      if (again) load();
      else settled();
    }
  }
  const scheduleLoad = throttle(load, () => Math.min(5000, 100 + rows.length / 20));
  function reload() {
    holder.dataset.settled = "false";
    scheduleLoad();
  }
  // data-settled="true": no read in flight or scheduled, so what is shown is
  // what the last read and the events since then say.
  function settled() {
    holder.dataset.settled = String(!loading && !scheduleLoad.pending());
  }
  const rerender = throttle(render, () => 250);

  /** Apply an event to the row it is about; false when a re-read is needed. */
  function patch(event) {
    const d = event.details || {};
    const row = d.binding ? byId.get(d.binding) : null;
    if (!row) return false;
    if (event.type === "refreshed" && d.expires != null && !d.old_contact) {
      row.deadline = nowSeconds() + d.expires;
      row.expires_in = d.expires;
      row.refreshed_at = event.time;
      return true;
    }
    if (event.type === "reachability" && typeof d.reachable === "boolean") {
      row.reachable = d.reachable;
      rerender();
      return true;
    }
    return false;
  }

  async function remove(row) {
    let calls = [];
    try {
      calls = (await api("calls")).filter((c) => (c.bindings || []).includes(row.id));
    } catch (err) {
      toast(`Cannot read calls: ${err.message}`, "error");
    }
    const body = [
      h("p", {}, "Remove the registration of ", h("strong", {}, row.account), " from ",
        h("span", { class: "mono" }, row.contact), "?"),
      h("p", { class: "muted" }, "The device is not told; it will register again on its next refresh. ",
        "“Delete and block for 1 h” also ends its calls and refuses that device (its registration, ",
        "its instance, or its IP and user agent) for an hour."),
    ];
    if (calls.length) {
      body.push(
        h("p", {}, `${calls.length} call${calls.length === 1 ? " is" : "s are"} in progress on this registration. `,
          "With “Delete and end calls” these end now (BYE / CANCEL):"),
        h("ul", { class: "call-list" }, calls.map((c) => h("li", { dataset: { call: c.id } },
          h("span", { class: "mono" }, c.id), " ", `${c.caller} → ${c.callee}`, " ",
          badge(c.state, c.state === "answered" ? "ok" : ""),
          c.answer ? ` ${fmtDuration(c.duration)}` : ""))),
      );
    } else {
      body.push(h("p", { class: "muted" }, "No call is in progress on this registration."));
    }
    const choice = await modal({
      title: "Delete registration",
      body,
      className: "confirm-delete",
      actions: [
        { label: "Delete, keep calls", value: "keep" },
        { label: calls.length ? `Delete and end ${calls.length} call${calls.length === 1 ? "" : "s"}` : "Delete and end calls", value: "kick", kind: "danger" },
        { label: "Delete and block for 1 h", value: "block", kind: "danger" },
      ],
    });
    if (!choice) return;
    try {
      const result = await api(`registrations/${encodeURIComponent(row.id)}`, {
        method: "DELETE",
        query: { kick: choice === "keep" ? "false" : "true", block: choice === "block" ? "3600" : "0" },
      });
      const ended = (result.calls_ended || []).length;
      toast(`Deleted ${row.contact}${result.kicked ? ` — ${ended} call${ended === 1 ? "" : "s"} ended` : ""}` +
        `${result.blocked_until ? " — device blocked for 1 h" : ""}`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    load();
  }

  const offEvents = stream.subscribe((event) => {
    if (REGISTRATION_EVENTS.has(event.type) && !patch(event)) reload();
  });
  const offStatus = stream.onStatus((state) => { if (state === "live") reload(); });
  const timer = setInterval(tick, 1000);
  load();

  return () => {
    offEvents();
    offStatus();
    clearInterval(timer);
  };
}
