// Events: the recorded log and the live stream, newest first. Kicks,
// rejections, flapping and flood blocks stand out; a kick shows old -> new
// contact and the calls it ended.

import { api } from "../api.js";
import { badge, fmtClock, fmtTime, h, historyHref, pageHeader } from "../ui.js";

const TYPES = [
  "registered", "refreshed", "same-device", "unregistered", "expired", "replaced", "rejected",
  "deleted", "reachability", "flapping", "flood-blocked", "auth-failed", "param-changed",
  "account-changed", "domain-changed", "call-started", "call-answered", "call-ended",
  "credential-sharing-suspected",
];
// What an operator watches for: a device thrown out (by another device or
// from the console), a device refused, two devices fighting over one account,
// a source blocked, a password that looks shared.
const ALERTS = new Set([
  "replaced", "deleted", "rejected", "flapping", "flood-blocked", "credential-sharing-suspected",
]);
const ALERTS_FILTER = "@alerts";
const KEEP = 500;

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function arrow(oldText, newText) {
  return h("span", { class: "change" },
    h("span", { class: "mono old" }, oldText || "?"), h("span", { class: "arrow", "aria-label": "replaced by" }, " → "),
    h("span", { class: "mono new" }, newText || "?"));
}

function callsEnded(ids) {
  if (!ids || !ids.length) return h("span", { class: "calls-ended none" }, "no call ended");
  return h("span", { class: "calls-ended" }, `${plural(ids.length, "call")} ended: `,
    ids.map((id, i) => [i ? ", " : "", h("span", { class: "mono" }, id)]));
}

const mono = (text) => h("span", { class: "mono" }, text ?? "");

/** What happened, as lines: the first is the story, the others details. */
function summary(event) {
  const d = event.details || {};
  switch (event.type) {
    case "replaced":
      return [
        arrow(d.old_contact, d.new_contact),
        [d.kicked === false || d.keep_calls ? "calls kept running (keep calls)" : callsEnded(d.calls_ended),
          d.policy === "off-unreachable" ? " · old device unreachable (replace Off)" : "",
          d.old_source ? ` · old device at ${d.old_source}` : ""],
      ];
    case "rejected":
      if (d.tombstone) {
        // a replaced registration's refresh (or a blocked device): what it was told
        return [[`refused with ${d.status ?? ""} ${d.reason ?? ""}`], d.text || ""];
      }
      return [
        ["refused ", mono(d.new_contact || "?"), ` with ${d.status ?? ""} ${d.reason ?? ""}`],
        [d.old_contact ? ["registered device ", mono(d.old_contact)] : "",
          d.retry_after != null ? ` · retry after ${d.retry_after} s` : "",
          d.flapping ? " · account flapping: replacements on hold" : ""],
      ];
    case "flapping":
      if (d.kind === "ping-pong") {
        return [`two devices replaced each other more than ${d.limit} times in ${d.window} s`,
          (d.devices || []).join(" ↔ "),
          d.held_until ? `further replacements refused until ${fmtClock(d.held_until)}` : ""];
      }
      return [`replaced more than ${d.limit} times in ${d.window} s`,
        d.held_until ? `further replacements refused until ${fmtClock(d.held_until)}` : ""];
    case "credential-sharing-suspected":
      return [`credential sharing suspected (${d.why}): ${plural((d.networks || []).length, "network")}, `
        + `${plural(d.kicks || 0, "kick")}`, (d.sources || []).join(", "),
      [(d.user_agents || []).join(", "), d.locked_until ? ` · locked until ${fmtClock(d.locked_until)}` : ""]];
    case "flood-blocked":
      return [`source blocked for ${d.seconds} s`, d.reason || ""];
    case "deleted":
      return [["deleted from the console: ", mono(d.contact)],
        [d.kicked ? callsEnded(d.calls_ended) : "calls kept",
          d.blocked_until ? ` · device blocked until ${fmtClock(d.blocked_until)}` : ""]];
    case "registered":
    case "refreshed":
    case "same-device":
      return [mono(d.contact),
        d.old_contact ? ["moved from ", mono(d.old_contact), d.old_source ? ` (${d.old_source})` : ""] : "",
        [d.expires != null ? `expires in ${d.expires} s` : "", d.user_agent ? ` · ${d.user_agent}` : ""]];
    case "unregistered":
    case "expired":
      return [[mono(d.contact), d.wildcard ? " (Contact: *)" : ""]];
    case "reachability":
      return [[mono(d.contact), " ", d.reachable ? badge("reachable", "ok") : badge("unreachable", "bad")]];
    case "param-changed":
      return [[h("code", {}, d.name), ": ", h("code", {}, d.old), " → ", h("code", {}, d.new)]];
    case "auth-failed":
      return [d.reason || "authentication failed"];
    case "call-started":
      return [`call to ${d.callee}`, `${plural(d.forks ?? 0, "fork")} · call ${d.call}`];
    case "call-answered":
      return [`call to ${d.callee} answered`, ["by ", mono(d.callee_contact || ""), ` · call ${d.call}`]];
    case "call-ended":
      return [`call to ${d.callee} ended: ${d.reason}`,
        `by ${d.direction} · SIP ${d.code}${d.duration ? ` · ${d.duration} s` : ""}${d.call ? ` · call ${d.call}` : ""}`];
    case "account-changed":
      return [[`account ${d.action}`, d.fields ? ` (${d.fields.join(", ")})` : ""],
        d.created != null ? `created ${d.created}, updated ${d.updated ?? 0}` : ""];
    case "domain-changed":
      return [[`domain ${d.action}: `, mono(d.domain)]];
    default:
      return [Object.entries(d).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ")];
  }
}

function eventRow(event) {
  const alert = ALERTS.has(event.type);
  return h("li", { class: `event ev-${event.type} ${alert ? "alert" : ""}`, dataset: { id: event.id, type: event.type } },
    h("time", { datetime: new Date(event.time * 1000).toISOString(), title: fmtTime(event.time) }, fmtClock(event.time)),
    h("span", { class: "etype" }, badge(event.type, alert ? "alert" : "")),
    h("span", { class: "who" },
      event.account ? h("a", { class: "account", href: historyHref(event.account) }, event.account) : null,
      event.source ? h("span", { class: "source mono" }, event.source) : null),
    h("span", { class: "what" }, summary(event).filter((line) => line !== "")
      .map((line, i) => h("span", { class: i ? "sub" : "main" }, line))));
}

export function mount(root, { stream }) {
  let events = [];
  const filter = { type: "", account: "" };
  const typeSelect = h("select", {
    "aria-label": "Event type", id: "event-type",
    onchange: (e) => { filter.type = e.target.value; load(); },
  },
  h("option", { value: "" }, "All events"),
  h("option", { value: ALERTS_FILTER }, "Kicks, rejects, flapping, floods"),
  TYPES.map((t) => h("option", { value: t }, t)));
  const accountInput = h("input", {
    type: "search", placeholder: "Filter by account", "aria-label": "Filter by account", id: "event-account",
    oninput: (e) => { filter.account = e.target.value.trim().toLowerCase(); render(); },
  });
  const list = h("ol", { class: "events", id: "events" }, h("li", { class: "event empty" }, "Loading…"));
  const count = h("span", { class: "count" });
  root.append(
    pageHeader("Events", "What the switch did, live: registrations, kicks, rejections, flapping, calls, parameter changes."),
    h("div", { class: "filters" }, typeSelect, accountInput, count),
    list,
  );

  function wanted(event) {
    if (filter.type === ALERTS_FILTER && !ALERTS.has(event.type)) return false;
    if (filter.type && filter.type !== ALERTS_FILTER && event.type !== filter.type) return false;
    return !filter.account || (event.account || "").toLowerCase().includes(filter.account);
  }

  function render() {
    const shown = events.filter(wanted);
    count.textContent = `${shown.length} shown`;
    list.replaceChildren(...shown.map(eventRow));
    if (!shown.length) list.append(h("li", { class: "event empty" }, "No event matches."));
  }

  async function load() {
    // The server filters by one exact type; the alert group and the account
    // substring are filtered here.
    const type = filter.type && filter.type !== ALERTS_FILTER ? filter.type : undefined;
    try {
      const fetched = await api("events", { query: { type, limit: KEEP } });
      // Live events that arrived during the read are kept (ids are increasing).
      const seen = new Set(fetched.map((e) => e.id));
      const newer = events.filter((e) => !seen.has(e.id) && e.id > (fetched[0]?.id ?? 0));
      events = [...newer, ...fetched].slice(0, KEEP);
      render();
    } catch (err) {
      list.replaceChildren(h("li", { class: "error" }, `Cannot read events: ${err.message}`));
    }
  }

  const off = stream.subscribe((event) => {
    if (events.some((e) => e.id === event.id)) return;
    events.unshift(event);
    if (events.length > KEEP) events.length = KEEP;
    if (!wanted(event)) return;
    list.querySelector(".event.empty")?.remove();
    const row = eventRow(event);
    row.classList.add("fresh");
    list.prepend(row);
    while (list.children.length > KEEP) list.lastElementChild.remove();
    count.textContent = `${list.querySelectorAll(".event:not(.empty)").length} shown`;
  });
  const offStatus = stream.onStatus((state) => { if (state === "live") load(); });
  load();
  return () => { off(); offStatus(); };
}
