// Parameters: the replace switch up front, then every parameter with its
// value, default and meaning, editable. Values are validated by the API; a
// refused value shows the API's error and nothing changes.

import { api } from "../api.js";
import { h, pageHeader, toast } from "../ui.js";

const REPLACE = "SS_ENDPOINT_REGISTER_REPLACE";

export function mount(root, { stream }) {
  let params = [];
  const drafts = new Map(); // name -> value typed but not saved
  const errors = new Map(); // name -> last refusal from the API
  const replaceHolder = h("div", { id: "replace-holder" });
  const listHolder = h("div", { id: "parameters" }, h("p", { class: "muted loading" }, "Loading…"));
  root.append(
    pageHeader("Parameters", "System parameters (VOS3000 names). A change applies to the next request; no restart."),
    replaceHolder,
    listHolder,
  );

  const byName = (name) => params.find((p) => p.name === name);

  function replaceCard() {
    const p = byName(REPLACE);
    if (!p) return null;
    const on = p.value === "On";
    const code = byName("REGISTER_REPLACE_REJECT_CODE")?.value || "403";
    const keep = byName("REGISTER_REPLACE_KEEP_CALLS")?.value === "On";
    const toggle = h("button", {
      type: "button", role: "switch", id: "replace-switch", class: `switch ${on ? "on" : "off"}`,
      "aria-checked": on ? "true" : "false", "aria-label": `${REPLACE} is ${p.value}; click to turn it ${on ? "Off" : "On"}`,
      onclick: () => save(REPLACE, on ? "Off" : "On", toggle),
    }, h("span", { class: "track" }, h("span", { class: "knob" })), h("span", { class: "switch-state" }, p.value));
    return h("section", { class: `replace-card ${on ? "is-on" : "is-off"}`, id: "replace-card" },
      h("div", { class: "replace-text" },
        h("h2", {}, "Registration replace ", h("code", {}, REPLACE)),
        h("p", { class: `mode ${on ? "current" : ""}` }, h("strong", {}, "On"),
          ` — a REGISTER from a new device replaces the old registration and ${keep ? "lets its calls run on (REGISTER_REPLACE_KEEP_CALLS is On)" : "ends (kicks) its calls"}.`),
        h("p", { class: `mode ${on ? "" : "current"}` }, h("strong", {}, "Off"),
          ` — a new device is refused with ${code} while the old registration lasts.`),
        h("p", { class: "muted small" }, "Per-account overrides (Accounts page) take precedence over this switch.")),
      toggle);
  }

  function editor(p) {
    const value = drafts.has(p.name) ? drafts.get(p.name) : p.value;
    const onchange = (e) => {
      if (e.target.value === p.value) drafts.delete(p.name);
      else drafts.set(p.name, e.target.value);
    };
    let control;
    const common = { id: `param-${p.name}`, name: p.name, "aria-label": `${p.name} value`, oninput: onchange, onchange };
    if (p.kind === "switch" || p.kind === "choice") {
      const choices = p.kind === "switch" ? ["On", "Off"] : p.choices;
      control = h("select", common, choices.map((c) => h("option", { value: c, selected: c === value }, c)));
    } else {
      control = h("input", {
        ...common, type: "text", value, spellcheck: "false", autocomplete: "off",
        inputmode: p.kind === "int" ? "numeric" : "text",
        onkeydown: (e) => { if (e.key === "Enter") save(p.name, e.target.value, e.target); },
      });
    }
    return control;
  }

  function paramRow(p) {
    const control = editor(p);
    const range = p.kind === "int" && (p.minimum !== null || p.maximum !== null)
      ? `${p.minimum ?? "…"}–${p.maximum ?? "…"}` : "";
    const saveButton = h("button", { type: "button", class: "small save", onclick: () => save(p.name, control.value, saveButton) }, "Save");
    const error = errors.get(p.name);
    const row = h("div", { class: `param ${drafts.has(p.name) ? "dirty" : ""} ${p.value !== p.default ? "changed" : ""}`, dataset: { name: p.name } },
      h("div", { class: "param-info" },
        h("code", { class: "param-name" }, p.name),
        h("p", { class: "meaning" }, p.meaning)),
      h("div", { class: "param-edit" },
        h("div", { class: "param-value" }, control, saveButton),
        h("div", { class: "param-meta" },
          h("span", {}, "default ", h("code", {}, p.default)),
          range ? h("span", {}, `range ${range}`) : null,
          p.value !== p.default
            ? h("button", { type: "button", class: "link", onclick: () => save(p.name, p.default, saveButton) }, "reset to default")
            : null),
        error ? h("p", { class: "error param-error", role: "alert" }, error) : null));
    for (const type of ["input", "change"]) {
      control.addEventListener(type, () => row.classList.toggle("dirty", drafts.has(p.name)));
    }
    return row;
  }

  function render() {
    replaceHolder.replaceChildren(replaceCard() || "");
    listHolder.replaceChildren(h("div", { class: "param-list" }, params.map(paramRow)));
  }

  async function load() {
    try {
      params = await api("parameters");
      render();
    } catch (err) {
      listHolder.replaceChildren(h("p", { class: "error" }, `Cannot read parameters: ${err.message}`));
    }
  }

  async function save(name, value, button) {
    if (button) button.disabled = true;
    try {
      const result = await api(`parameters/${encodeURIComponent(name)}`, { method: "PUT", body: { value } });
      drafts.delete(name);
      errors.delete(name);
      const index = params.findIndex((p) => p.name === name);
      if (index >= 0) params[index] = { ...params[index], value: result.value };
      if (result.old !== result.value) toast(`${name}: ${result.old} → ${result.value}`, "ok");
    } catch (err) {
      // Nothing changed on the server: keep the typed value so it can be fixed.
      errors.set(name, err.message);
      drafts.set(name, value);
      toast(`${name} not changed: ${err.message}`, "error");
    }
    render();
  }

  const off = stream.subscribe((event) => {
    if (event.type === "param-changed") load();
  });
  const offStatus = stream.onStatus((state) => { if (state === "live") load(); });
  load();
  return () => { off(); offStatus(); };
}
