// Accounts: list, add, edit, delete. Passwords are write-only (the API keeps
// hashes); an account with allowed networks and no password is IP-authenticated.

import { api } from "../api.js";
import { aorCell, badge, debounce, field, h, modal, pageHeader, table, toast } from "../ui.js";

const OVERRIDES = ["inherit", "on", "off"];

function networksText(list) {
  return (list || []).join("\n");
}

function parseNetworks(text) {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

function overrideBadge(value) {
  return value === "inherit" ? h("span", { class: "muted" }, "inherit") : badge(value, value === "on" ? "ok" : "warn");
}

/** The account form; `account` null for a new one. Returns {node, read()}. */
function accountForm(account, defaultDomain) {
  const isNew = !account;
  const user = h("input", { name: "user", required: true, value: account?.user || "", disabled: !isNew, autocomplete: "off", spellcheck: "false" });
  const domain = h("input", { name: "domain", required: true, value: account?.domain || defaultDomain, placeholder: "regswitch.local", disabled: !isNew, spellcheck: "false" });
  const password = h("input", {
    name: "password", type: "password", autocomplete: "new-password",
    placeholder: isNew ? "none: IP authentication only" : (account.has_password ? "unchanged" : "none set"),
  });
  const networks = h("textarea", { name: "allowed_networks", rows: "2", spellcheck: "false", placeholder: "e.g. 203.0.113.0/24" }, networksText(account?.allowed_networks));
  const maxContacts = h("input", { name: "max_contacts", type: "number", min: "1", max: "100", value: String(account?.max_contacts ?? 1) });
  const select = (name, current) => h("select", { name }, OVERRIDES.map((o) => h("option", { value: o, selected: o === current }, o)));
  const replace = select("register_replace", account?.register_replace || "inherit");
  const keepCalls = select("replace_keep_calls", account?.replace_keep_calls || "inherit");
  const enabled = h("input", { name: "enabled", type: "checkbox", checked: account ? account.enabled : true });
  // an account in a domain the switch does not serve is refused unless asked
  const createDomain = h("input", { name: "create_domain", type: "checkbox" });

  const node = h("div", { class: "form-grid account-form" },
    field("User", user), field("Domain", domain),
    field("Password", password, isNew ? "Leave empty for IP authentication." : "Leave empty to keep the current password."),
    field("Allowed networks", networks, "CIDRs, one per line. A source outside them is refused (403)."),
    field("Max contacts", maxContacts, "Devices registered at once; 1 = one registration per account."),
    field("Replace (register_replace)", replace, "inherit: follow SS_ENDPOINT_REGISTER_REPLACE."),
    field("Keep calls on replace", keepCalls, "inherit: follow REGISTER_REPLACE_KEEP_CALLS."),
    h("label", { class: "field checkbox" }, enabled, h("span", {}, "Enabled")),
    isNew ? h("label", { class: "field checkbox" }, createDomain, h("span", {}, "Serve the domain too if it is new")) : null);

  function read() {
    const data = {
      allowed_networks: parseNetworks(networks.value),
      max_contacts: Number(maxContacts.value),
      register_replace: replace.value,
      replace_keep_calls: keepCalls.value,
      enabled: enabled.checked,
    };
    if (password.value) data.password = password.value;
    if (isNew) Object.assign(data, { user: user.value.trim(), domain: domain.value.trim(), create_domain: createDomain.checked });
    return data;
  }
  return { node, read };
}

/** A dialog around the account form that stays open on an API error. */
function editDialog(title, account, defaultDomain, submit) {
  return new Promise((resolve) => {
    const { node, read } = accountForm(account, defaultDomain);
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const saveButton = h("button", { type: "submit", class: "primary" }, account ? "Save" : "Add account");
    const dialog = h("dialog", { class: "dialog wide account-dialog" });
    const form = h("form", {
      onsubmit: async (e) => {
        e.preventDefault();
        saveButton.disabled = true;
        try {
          resolve(await submit(read()));
          dialog.close();
        } catch (err) {
          error.textContent = err.message;
          error.hidden = false;
        } finally {
          saveButton.disabled = false;
        }
      },
    }, h("h2", {}, title), node, error,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "ghost", onclick: () => { dialog.close(); resolve(null); } }, "Cancel"),
      saveButton));
    dialog.append(form);
    dialog.addEventListener("close", () => { dialog.remove(); resolve(null); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function mount(root, { stream }) {
  let accounts = [];
  let registered = new Map(); // aor -> count
  let sharing = new Map(); // aor -> credential-sharing flag (GET /api/sharing)
  let search = "";
  const holder = h("div", { id: "accounts" }, h("p", { class: "muted loading" }, "Loading…"));
  const addButton = h("button", { class: "primary", id: "add-account", onclick: () => add() }, "Add account");
  const filter = h("input", {
    type: "search", placeholder: "Filter accounts", "aria-label": "Filter accounts",
    oninput: (e) => { search = e.target.value.trim().toLowerCase(); render(); },
  });
  const count = h("span", { class: "count" });
  root.append(
    pageHeader("Accounts", "SIP subscribers: credentials, allowed networks and per-account replace policy.", addButton),
    h("div", { class: "filters" }, filter, count),
    holder,
  );

  const defaultDomain = () => accounts[0]?.domain || "";

  const columns = [
    { label: "Account", class: "strong", cell: (a) => aorCell(a.aor) },
    {
      label: "Authentication",
      cell: (a) => [a.has_password ? badge("digest", "") : null,
        a.allowed_networks.length ? h("span", { class: "mono small" }, ` ${a.allowed_networks.join(", ")}`) : null,
        !a.has_password && !a.allowed_networks.length ? badge("none", "bad") : null],
    },
    { label: "Max contacts", class: "num", cell: (a) => String(a.max_contacts) },
    { label: "Replace", cell: (a) => overrideBadge(a.register_replace) },
    { label: "Keep calls", cell: (a) => overrideBadge(a.replace_keep_calls) },
    { label: "Registered", class: "num", cell: (a) => String(registered.get(a.aor) || 0) },
    {
      label: "Status",
      cell: (a) => [a.enabled ? badge("enabled", "ok") : badge("disabled", "bad"), sharingBadge(a)],
    },
    {
      label: "", class: "row-actions",
      cell: (a) => [
        sharing.has(a.aor)
          ? h("button", { class: "small", onclick: () => unlock(a), "aria-label": `Unlock ${a.aor}` },
            sharing.get(a.aor).locked_until ? "Unlock" : "Clear")
          : null,
        h("button", { class: "small", onclick: () => edit(a), "aria-label": `Edit ${a.aor}` }, "Edit"),
        h("button", { class: "small danger", onclick: () => remove(a), "aria-label": `Delete ${a.aor}` }, "Delete")],
    },
  ];

  function sharingBadge(a) {
    const flag = sharing.get(a.aor);
    if (!flag) return null;
    const where = `${flag.networks.length} networks, ${flag.kicks} kicks: ${flag.sources.join(", ")}`;
    const label = flag.locked_until ? "locked: sharing suspected" : "sharing suspected";
    return h("span", { class: "sharing-badge", title: where }, " ", badge(label, flag.locked_until ? "bad" : "warn"));
  }

  async function unlock(account) {
    try {
      await api(`sharing/${encodeURIComponent(account.aor)}`, { method: "DELETE" });
      toast(`${account.aor} unlocked`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    load();
  }

  function render() {
    const shown = accounts.filter((a) => !search || a.aor.toLowerCase().includes(search));
    count.textContent = `${shown.length} of ${accounts.length}`;
    holder.replaceChildren(table(columns, shown, {
      empty: accounts.length ? "No account matches." : "No account yet.",
      rowAttrs: (a) => ({ dataset: { aor: a.aor } }),
    }));
  }

  async function load() {
    try {
      const [list, regs, flags] = await Promise.all([api("accounts"), api("registrations"), api("sharing")]);
      sharing = new Map(flags.map((f) => [f.account, f]));
      accounts = list.sort((a, b) => a.aor.localeCompare(b.aor));
      registered = new Map();
      for (const r of regs) registered.set(r.account, (registered.get(r.account) || 0) + 1);
      render();
    } catch (err) {
      holder.replaceChildren(h("p", { class: "error" }, `Cannot read accounts: ${err.message}`));
    }
  }
  const reload = debounce(load, 200);

  async function add() {
    const created = await editDialog("Add account", null, defaultDomain(),
      (data) => api("accounts", { method: "POST", body: data }));
    if (created) { toast(`Account ${created.aor} added`, "ok"); load(); }
  }

  async function edit(account) {
    const updated = await editDialog(`Edit ${account.aor}`, account, defaultDomain(),
      (data) => api(`accounts/${encodeURIComponent(account.aor)}`, { method: "PATCH", body: data }));
    if (updated) { toast(`Account ${updated.aor} saved`, "ok"); load(); }
  }

  async function remove(account) {
    const n = registered.get(account.aor) || 0;
    const choice = await modal({
      title: "Delete account",
      body: [h("p", {}, "Delete ", h("strong", {}, account.aor), "? It can no longer register or call."),
        n ? h("p", { class: "muted" }, `It has ${n} registration${n === 1 ? "" : "s"} now.`) : null],
      actions: [{ label: "Delete account", value: "yes", kind: "danger" }],
    });
    if (!choice) return;
    try {
      await api(`accounts/${encodeURIComponent(account.aor)}`, { method: "DELETE" });
      toast(`Account ${account.aor} deleted`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    load();
  }

  const off = stream.subscribe((event) => {
    if (event.type === "account-changed" || event.type === "registered" || event.type === "expired"
      || event.type === "unregistered" || event.type === "deleted" || event.type === "replaced"
      || event.type === "credential-sharing-suspected") reload();
  });
  load();
  return () => off();
}
