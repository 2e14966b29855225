// The JSON API client: bearer token (asked for on a 401, kept in sessionStorage
// only, so it dies with the tab) and {"error": ...} bodies as ApiError.

const TOKEN_KEY = "regswitch.api-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

// One prompt at a time: every request that got a 401 waits for the same answer.
let pendingPrompt = null;

export function askToken(wrong = false) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  error.hidden = !wrong;
  error.textContent = wrong ? "That token was refused. Try again." : "";
  input.value = "";
  pendingPrompt = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      form.removeEventListener("submit", done);
      dialog.removeEventListener("cancel", block);
      setToken(token);
      dialog.close();
      pendingPrompt = null;
      resolve(token);
    };
    // Without a token nothing works: Escape must not leave an empty console.
    const block = (event) => event.preventDefault();
    form.addEventListener("submit", done);
    dialog.addEventListener("cancel", block);
  });
  dialog.showModal();
  input.focus();
  return pendingPrompt;
}

/** A request to the API; resolves to parsed JSON (or text), throws ApiError. */
export async function api(path, { method = "GET", body, query } = {}) {
  let url = `api/${path.replace(/^\/+/, "")}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.append(key, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const init = { method, headers: authHeaders({ Accept: "application/json" }), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, `cannot reach the regswitch API (${err.message})`);
    }
    if (response.status === 401) {
      await askToken(attempt > 0 || Boolean(getToken()));
      init.headers = { ...init.headers, ...authHeaders() };
      continue;
    }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json().catch(() => null) : await response.text();
    if (!response.ok) {
      const message = data && typeof data === "object" && data.error ? data.error : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }
}

/** An API URL for a plain link (e.g. a CSV download). */
export function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.append(key, value);
  }
  const text = params.toString();
  return `api/${path}${text ? `?${text}` : ""}`;
}
