// Small DOM helpers. Everything shown goes through text nodes, never
// innerHTML: contacts and User-Agents come from the network and are
// attacker-controlled.

/** h("td", {class: "x", onclick: fn, dataset: {id: 1}}, "text", childNode, [more]) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") el.style.cssText = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const pad = (n) => String(n).padStart(2, "0");

/** Local wall time, "2024-05-01 13:02:03" (the operator's time zone). */
export function fmtTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "";
  const d = new Date(epochSeconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Time of day for today, else date and time: short enough for a table column. */
export function fmtWhen(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "";
  const d = new Date(epochSeconds * 1000);
  const now = new Date();
  const today = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return today ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function fmtClock(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return hours ? `${hours}:${pad(minutes)}:${pad(rest)}` : `${minutes}:${pad(rest)}`;
}

/** Epoch seconds of a <input type="datetime-local"> value (local time), or "". */
export function localInputToEpoch(value) {
  if (!value) return "";
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? "" : String(Math.floor(ms / 1000));
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/**
 * A modal dialog: resolves to the `value` of the action clicked, or null on
 * cancel/Escape. actions: [{label, value, kind: "primary"|"danger"|""}].
 */
export function modal({ title, body, actions, className = "" }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: `dialog ${className}` });
    const form = h("form", { method: "dialog" },
      h("h2", {}, title),
      h("div", { class: "dialog-body" }, body),
      h("div", { class: "actions" },
        h("button", { type: "submit", value: "", class: "ghost" }, "Cancel"),
        actions.map((a) => h("button", { type: "submit", value: a.value, class: a.kind || "" }, a.label))),
    );
    dialog.append(form);
    dialog.addEventListener("close", () => {
      const value = dialog.returnValue;
      dialog.remove();
      resolve(value ? value : null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/**
 * A data table. columns: [{label, cell(row) -> Node|string, class}].
 * On narrow screens CSS turns each row into a card; data-label gives each
 * cell its heading there.
 */
export function table(columns, rows, { empty = "Nothing to show.", rowAttrs } = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class?.includes("num") ? "num" : undefined, scope: "col" }, c.label))));
  const body = h("tbody");
  if (!rows.length) {
    body.append(h("tr", { class: "empty" }, h("td", { colspan: columns.length }, empty)));
  }
  for (const row of rows) {
    const attrs = rowAttrs ? rowAttrs(row) : {};
    // One child per cell: in the phone card layout a cell is a flex row of label and value.
    const cell = (c) => { const v = c.cell(row); return Array.isArray(v) ? h("span", {}, v) : v; };
    body.append(h("tr", attrs, columns.map((c) => h("td", { class: c.class, "data-label": c.label }, cell(c)))));
  }
  return h("div", { class: "table-wrap" }, h("table", { class: "grid" }, head, body));
}

/** A badge: h("span.badge.badge-<kind>") */
export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind ? `badge-${kind}` : ""}` }, text);
}

/**
 * Run fn at most once per gapMs() (first call soon, a trailing call always):
 * live updates stay prompt when rare and cheap when frequent.
 */
export function throttle(fn, gapMs, firstDelayMs = 50) {
  let timer = null;
  let last = -Infinity;
  const run = () => {
    if (timer !== null) return;
    const wait = Math.max(firstDelayMs, last + gapMs() - performance.now());
    timer = setTimeout(() => {
      timer = null;
      last = performance.now();
      fn();
    }, wait);
  };
  run.pending = () => timer !== null; // a call is scheduled and has not run yet
  return run;
}

/** Run fn once calls stop for `ms`. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Page header with a title, a one-line description and optional tools. */
export function pageHeader(title, description, ...tools) {
  return h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, title), description ? h("p", { class: "lead" }, description) : null),
    tools.length ? h("div", { class: "tools" }, tools) : null);
}

/** A form field: label above control; `hint` below. */
export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control,
    hint ? h("span", { class: "hint" }, hint) : null);
}

/** "user" over "@domain" in a table cell: accounts are the widest column otherwise.
 * A link to the account's history. */
export function aorCell(aor) {
  const at = (aor || "").indexOf("@");
  if (at < 0) return aor || "";
  return h("a", { class: "aor", href: historyHref(aor), title: `History of ${aor}` },
    aor.slice(0, at), h("span", { class: "domain" }, aor.slice(at)));
}

/** The console address of an account's history page. */
export function historyHref(aor) {
  return `#/history/${encodeURIComponent(aor)}`;
}
