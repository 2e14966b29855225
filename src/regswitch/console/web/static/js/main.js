// The console shell: hash routes -> page modules, the live-stream indicator,
// node info. Each page module exports mount(root, ctx) -> cleanup().

import { EventStream } from "./stream.js";
import * as registrations from "./pages/registrations.js";
import * as parameters from "./pages/parameters.js";
import * as events from "./pages/events.js";
import * as calls from "./pages/calls.js";
import * as cdrs from "./pages/cdrs.js";
import * as accounts from "./pages/accounts.js";
import * as dashboard from "./pages/dashboard.js";
import * as history from "./pages/history.js";

const PAGES = { dashboard, registrations, parameters, events, calls, cdrs, accounts, history };
const DEFAULT_PAGE = "dashboard";

const stream = new EventStream();
const ctx = { stream };
let cleanup = null;

function currentRoute() {
  const match = location.hash.match(/^#\/([\w-]+)/);
  const name = match ? match[1] : DEFAULT_PAGE;
  return PAGES[name] ? name : DEFAULT_PAGE;
}

function show() {
  const name = currentRoute();
  for (const link of document.querySelectorAll("nav.tabs a")) {
    const active = link.dataset.page === name;
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (cleanup) cleanup();
  const root = document.getElementById("page");
  root.replaceChildren();
  root.dataset.page = name;
  cleanup = PAGES[name].mount(root, ctx) || null;
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · regswitch`;
}

function showLiveState(state) {
  const box = document.getElementById("live");
  box.dataset.state = state;
  document.getElementById("live-label").textContent =
    { live: "live", connecting: "connecting…", offline: "offline — retrying" }[state] || state;
}

async function showNode() {
  try {
    const health = await (await fetch("healthz", { cache: "no-store" })).json();
    const sip = (health.sip || []).map((l) => `${l.transport} ${l.host}:${l.port}`).join(", ");
    document.getElementById("node-info").textContent = sip ? `SIP ${sip}` : "";
  } catch {
    // the header is decoration; pages report API errors themselves
  }
}

window.addEventListener("hashchange", show);
stream.onStatus(showLiveState);
show();
stream.start();
showNode();
