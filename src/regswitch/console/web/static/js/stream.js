// The live event stream (GET api/events/stream, Server-Sent Events).
//
// Read with fetch() rather than EventSource: EventSource cannot send an
// Authorization header, and the API wants the bearer token on every /api
// path. fetch streams the body just as well; this file parses the SSE frames
// and reconnects with Last-Event-ID so nothing is missed across a drop (the
// server keeps a bounded backlog).

import { askToken, authHeaders, getToken } from "./api.js";

const MIN_RETRY_MS = 500;
const MAX_RETRY_MS = 10000;

export class EventStream {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.statsListeners = new Set();
    this.lastId = null;
    this.retryMs = 2000;
    this.state = "connecting";
    this.controller = null;
    this.failures = 0;
  }

  /** fn(event) for every event; returns an unsubscribe function. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** fn(sample) for every new dashboard sample (`stats` frames); returns an unsubscribe function. */
  onStats(fn) {
    this.statsListeners.add(fn);
    return () => this.statsListeners.delete(fn);
  }

  /** fn(state) on "connecting" | "live" | "offline"; "live" again after a reconnect
   * tells pages to re-read what they show. Returns an unsubscribe function. */
  onStatus(fn) {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  start() {
    this.loop();
  }

  setState(state) {
    this.state = state;
    for (const fn of this.statusListeners) fn(state);
  }

  async loop() {
    for (;;) {
      try {
        if ((await this.connectOnce()) === "authorised") continue; // a new token: retry now
        this.failures = 0;
      } catch (err) {
        this.failures += 1;
        if (err && err.name !== "AbortError") console.debug("event stream:", err.message);
      }
      this.setState(this.failures > 1 ? "offline" : "connecting");
      const backoff = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, this.retryMs) * 2 ** Math.min(this.failures, 3));
      await new Promise((resolve) => setTimeout(resolve, this.failures ? backoff : this.retryMs));
    }
  }

  async connectOnce() {
    this.setState("connecting");
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastId !== null) headers["Last-Event-ID"] = String(this.lastId);
    this.controller = new AbortController();
    const response = await fetch("api/events/stream?stats=true", {
      headers, cache: "no-store", signal: this.controller.signal,
    });
    if (response.status === 401) {
      await askToken(Boolean(getToken()));
      return "authorised";
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    this.setState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "ended";
      buffer += value;
      // Frames end with a blank line; keep an incomplete tail for the next chunk.
      const frames = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = frames.pop();
      for (const frame of frames) this.handleFrame(frame);
    }
  }

  handleFrame(frame) {
    let id = null;
    let name = "message";
    const data = [];
    for (const line of frame.split(/\r\n|\n|\r/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    }
    if (id !== null && /^\d+$/.test(id)) this.lastId = Number(id);
    if (!data.length) return;
    let event;
    try {
      event = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    const listeners = name === "stats" ? this.statsListeners : this.listeners;
    for (const fn of listeners) {
      try {
        fn(event);
      } catch (err) {
        console.error("event listener failed", err);
      }
    }
    // The newest event every page has been given: lets a test (or a
    // curious operator) see that the page has caught up with the switch.
    if (name !== "stats" && this.lastId !== null) document.documentElement.dataset.lastEvent = String(this.lastId);
  }
}
