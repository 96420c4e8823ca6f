// The API keys page: list, search and filter, create (key shown once), details with
// usage, edit limits, revoke and delete. Every change carries the CSRF token.
import { makeChart } from "./charts.js";
import {
  adminApi,
  clientKey,
  copyText,
  el,
  fmt,
  icon,
  labelRows,
  toDate,
  toast,
  wireDialog,
} from "./common.js";

const LIMITS = [
  ["daily_requests", "requests / day"],
  ["rpm", "requests / min"],
  ["daily_tokens", "tokens / day"],
  ["max_concurrency", "at once"],
];
const STATUS_BADGES = { active: "badge-green", revoked: "badge-red", expired: "badge-amber" };

const body = document.getElementById("keys-body");
const empty = document.getElementById("keys-empty");
const listError = document.getElementById("keys-error");
const search = document.getElementById("key-search");
const statusFilter = document.getElementById("key-status");
const formDialog = document.getElementById("key-form-dialog");
const form = document.getElementById("key-form");
const formError = document.getElementById("key-form-error");
const createdDialog = document.getElementById("key-created-dialog");
const detailDialog = document.getElementById("key-detail-dialog");
const confirmDialog = document.getElementById("confirm-dialog");

let keys = [];
let editing = null; // the key being edited, or null when creating
let detailKey = null;
let detailChart = null;
let searchTimer = 0;
let loadSeq = 0;

function showError(box, error) {
  box.hidden = !error;
  if (error) box.querySelector("span").textContent = error.message || String(error);
}

function statusBadge(status) {
  return el("span", { class: `badge ${STATUS_BADGES[status] || "badge-slate"}` }, status);
}

function limitSummary(key) {
  const parts = LIMITS.filter(([field]) => key[field] !== null && key[field] !== undefined).map(
    ([field, label]) => `${fmt.compact(key[field])} ${label}`,
  );
  return parts.length ? parts.join(" · ") : "unlimited";
}

function modelsCell(models) {
  if (!models || models.length === 0) {
    return el("span", { class: "text-slate-500 dark:text-slate-400" }, "all");
  }
  return el(
    "div",
    { class: "flex max-w-[14rem] flex-wrap gap-1" },
    models.map((model) => el("span", { class: "badge badge-slate font-mono" }, model)),
  );
}

function actionButton(label, iconName, onClick, extra = "") {
  return el(
    "button",
    {
      type: "button",
      class: `btn btn-ghost btn-sm ${extra}`,
      title: label,
      "aria-label": label,
      onclick: onClick,
    },
    icon(iconName),
  );
}

function todayCell(key) {
  const today = key.usage_today || { requests: 0, rejected: 0, total_tokens: 0 };
  const parts = [`${fmt.number(today.requests)} req`];
  if (today.rejected) parts.push(`${fmt.number(today.rejected)} refused`);
  return el(
    "td",
    { class: "table-cell whitespace-nowrap text-xs tabular-nums", title: `${fmt.number(today.total_tokens)} tokens today` },
    parts.join(" · "),
  );
}

function whenCell(value, none) {
  return el(
    "td",
    { class: "table-cell whitespace-nowrap text-xs text-slate-600 dark:text-slate-400", title: value ? fmt.dateTime(value) : "" },
    value ? fmt.relative(value) : none,
  );
}

function row(key) {
  const active = key.status === "active";
  return el(
    "tr",
    { class: "hover:bg-slate-50 dark:hover:bg-slate-800/40", dataset: { keyId: key.id } },
    el(
      "td",
      { class: "table-cell" },
      el(
        "div",
        { class: "min-w-0 text-left" },
        el(
          "button",
          {
            type: "button",
            class: "text-left font-medium break-words text-slate-900 hover:text-indigo-700 dark:text-white dark:hover:text-indigo-300",
            onclick: () => openDetails(key),
            "data-testid": "key-name",
          },
          key.name,
        ),
        key.email ? el("div", { class: "text-xs break-all text-slate-600 dark:text-slate-400" }, key.email) : null,
      ),
    ),
    el("td", { class: "table-cell font-mono text-xs text-slate-600 dark:text-slate-400" }, key.prefix),
    el("td", { class: "table-cell" }, statusBadge(key.status)),
    todayCell(key),
    el("td", { class: "table-cell text-xs text-slate-600 dark:text-slate-300" }, limitSummary(key)),
    el("td", { class: "table-cell text-xs" }, modelsCell(key.models)),
    whenCell(key.last_used_at, "never"),
    whenCell(key.created_at, "—"),
    whenCell(key.expires_at, "never"),
    el(
      "td",
      { class: "table-cell whitespace-nowrap text-right" },
      el(
        "div",
        { class: "inline-flex" },
        actionButton(`Details of ${key.name}`, "fa-chart-simple", () => openDetails(key)),
        actionButton(`Edit ${key.name}`, "fa-pen", () => openForm(key)),
        active ? actionButton(`Revoke ${key.name}`, "fa-ban", () => revoke(key)) : null,
        actionButton(`Delete ${key.name}`, "fa-trash", () => remove(key), "hover:text-rose-600 dark:hover:text-rose-400"),
      ),
    ),
  );
}

// --- the list: searched, filtered, sorted and paged by the server ----------------

const PAGE_SIZE = 50;
const range = document.getElementById("keys-range");
const previous = document.getElementById("keys-prev");
const next = document.getElementById("keys-next");
const view = { sort: "created_at", order: "desc", offset: 0 };

function viewFromUrl() {
  const params = new URLSearchParams(window.location.search);
  search.value = params.get("q") || "";
  statusFilter.value = params.get("status") || "";
  view.sort = params.get("sort") || "created_at";
  view.order = params.get("order") === "asc" ? "asc" : "desc";
  view.offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
}

function listParams() {
  const params = new URLSearchParams();
  if (search.value.trim()) params.set("q", search.value.trim());
  if (statusFilter.value) params.set("status", statusFilter.value);
  if (view.sort !== "created_at") params.set("sort", view.sort);
  if (view.order !== "desc") params.set("order", view.order);
  if (view.offset) params.set("offset", String(view.offset));
  return params;
}

const sortSelect = document.getElementById("key-sort");

function showSort() {
  const chosen = `${view.sort}:${view.order}`;
  if ([...sortSelect.options].some((option) => option.value === chosen)) sortSelect.value = chosen;
  for (const head of document.querySelectorAll("th[data-sort]")) {
    const sorted = head.dataset.sort === view.sort;
    head.setAttribute("aria-sort", sorted ? (view.order === "asc" ? "ascending" : "descending") : "none");
    const mark = head.querySelector("i");
    mark.className = `fa-solid ${sorted ? (view.order === "asc" ? "fa-sort-up" : "fa-sort-down") : "fa-sort"} text-[0.65rem] opacity-60`;
  }
}

async function load() {
  const seq = ++loadSeq;
  const params = listParams();
  const query = new URLSearchParams(params);
  query.set("limit", String(PAGE_SIZE));
  query.set("sort", view.sort);
  query.set("order", view.order);
  window.history.replaceState(null, "", `${window.location.pathname}${params.size ? `?${params}` : ""}`);
  showSort();
  try {
    const result = await adminApi(`/api/v1/keys?${query}`);
    if (seq !== loadSeq) return; // a newer search has started
    keys = result.data || [];
    showError(listError, null);
    body.replaceChildren(...keys.map(row));
    labelRows(body);
    empty.hidden = keys.length > 0;
    const filtered = Boolean(search.value.trim() || statusFilter.value);
    empty.querySelector("p").textContent = filtered ? "No key matches" : "No keys here yet";
    range.textContent = keys.length
      ? `${fmt.number(result.offset + 1)}–${fmt.number(result.offset + keys.length)} of ${fmt.number(result.total)}`
      : "";
    previous.disabled = result.offset === 0;
    next.disabled = !result.has_more;
  } catch (error) {
    showError(listError, error);
  }
}

function restart() {
  view.offset = 0;
  load();
}

// --- create and edit -----------------------------------------------------------

function field(name) {
  return form.elements.namedItem(name);
}

function toLocalInput(value) {
  const date = toDate(value);
  if (!date) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function openForm(key = null) {
  editing = key;
  form.reset();
  showError(formError, null);
  document.getElementById("key-form-title").textContent = key ? `Edit “${key.name}”` : "New API key";
  form.querySelector("#key-form-submit span").textContent = key ? "Save changes" : "Create key";
  if (key) {
    field("name").value = key.name;
    field("email").value = key.email || "";
    for (const [name] of LIMITS) field(name).value = key[name] ?? "";
    field("models").value = (key.models || []).join(", ");
    field("expires_at").value = toLocalInput(key.expires_at);
  } else {
    field("daily_requests").value = field("daily_requests").dataset.default || "";
  }
  detailDialog.close();
  formDialog.showModal();
  field("name").focus();
}

function readForm() {
  const name = field("name").value.trim();
  if (!name) throw new Error("Give the key a name, so you know later what it is for.");
  const values = { name, email: field("email").value.trim() || null };
  for (const [limit, label] of LIMITS) {
    const raw = field(limit).value.trim();
    if (raw === "") {
      values[limit] = null;
      continue;
    }
    const number = Number(raw);
    if (!Number.isInteger(number) || number < 1) {
      throw new Error(`The limit “${label}” must be a whole number of at least 1, or empty.`);
    }
    values[limit] = number;
  }
  values.models = field("models")
    .value.split(/[,\s]+/)
    .map((model) => model.trim())
    .filter(Boolean);
  const expires = field("expires_at").value;
  values.expires_at = expires ? new Date(expires).toISOString() : null;
  return values;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const submit = document.getElementById("key-form-submit");
  let values;
  try {
    values = readForm();
  } catch (error) {
    showError(formError, error);
    return;
  }
  submit.disabled = true;
  try {
    if (editing) {
      await adminApi(`/api/v1/keys/${encodeURIComponent(editing.id)}`, { method: "PATCH", body: values });
      formDialog.close();
      toast(`Saved “${values.name}”.`, "success");
    } else {
      const created = await adminApi("/api/v1/keys", { method: "POST", body: values });
      formDialog.close();
      showCreated(created);
    }
    await load();
  } catch (error) {
    showError(formError, error);
  } finally {
    submit.disabled = false;
  }
});

for (const chip of document.querySelectorAll("[data-model]")) {
  chip.addEventListener("click", () => {
    const input = field("models");
    const models = input.value.split(/[,\s]+/).filter(Boolean);
    if (!models.includes(chip.dataset.model)) models.push(chip.dataset.model);
    input.value = models.join(", ");
  });
}

function showCreated(created) {
  document.getElementById("created-name").textContent = created.name;
  const input = document.getElementById("created-key");
  input.value = created.key;
  createdDialog.showModal();
  input.select();
}

document.getElementById("copy-key-button").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  try {
    await copyText(document.getElementById("created-key").value);
    button.querySelector("span").textContent = "Copied";
    toast("Key copied to the clipboard.", "success");
    window.setTimeout(() => {
      button.querySelector("span").textContent = "Copy";
    }, 2000);
  } catch {
    toast("Copy failed: select the key and copy it by hand.", "error");
  }
});

document.getElementById("try-key-button").addEventListener("click", () => {
  clientKey.set(document.getElementById("created-key").value);
  window.location.assign("/chat");
});

// Forget the key as soon as the dialog closes: it is shown once.
createdDialog.addEventListener("close", () => {
  document.getElementById("created-key").value = "";
});

// --- details ----------------------------------------------------------------------

function detailField(label, value) {
  return el(
    "div",
    {},
    el("dt", { class: "text-xs text-slate-500 dark:text-slate-400" }, label),
    el("dd", { class: "mt-0.5 break-words text-slate-900 dark:text-slate-100" }, value),
  );
}

function todayTile(label, value) {
  return el(
    "div",
    { class: "rounded-lg bg-slate-50 p-3 dark:bg-slate-800/60" },
    el("div", { class: "text-xs text-slate-500 dark:text-slate-400" }, label),
    el("div", { class: "mt-0.5 text-lg font-semibold tabular-nums text-slate-900 dark:text-white" }, value),
  );
}

/** The daily rows of /api/v1/usage as {day, requests, tokens}. */
function usageSeries(usage) {
  return usage.daily.map((item) => ({
    day: item.day,
    requests: item.requests,
    tokens: item.total_tokens,
  }));
}

function lastDays(count) {
  const days = [];
  const today = new Date();
  for (let back = count - 1; back >= 0; back -= 1) {
    const day = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - back));
    days.push(day.toISOString().slice(0, 10));
  }
  return days;
}

async function openDetails(key) {
  detailKey = key;
  document.getElementById("detail-name").textContent = key.name;
  document.getElementById("detail-sub").textContent = `${key.prefix} · created ${fmt.date(key.created_at)}`;
  document.getElementById("detail-revoke").hidden = key.status !== "active";
  document.getElementById("detail-fields").replaceChildren(
    detailField("Status", statusBadge(key.status)),
    detailField("Email", key.email || "—"),
    detailField("Created", fmt.dateTime(key.created_at)),
    detailField("Last used", key.last_used_at ? fmt.dateTime(key.last_used_at) : "never"),
    detailField("Expires", key.expires_at ? fmt.dateTime(key.expires_at) : "never"),
    detailField("Allowed models", key.models?.length ? key.models.join(", ") : "all"),
    detailField("Requests per day", fmt.limit(key.daily_requests)),
    detailField("Requests per minute", fmt.limit(key.rpm)),
    detailField("Tokens per day", fmt.limit(key.daily_tokens)),
    detailField("Concurrent requests", fmt.limit(key.max_concurrency)),
  );
  const today = document.getElementById("detail-today");
  today.replaceChildren(todayTile("Requests today", "…"), todayTile("Tokens today", "…"));
  detailDialog.showModal();

  const days = lastDays(30);
  let series = [];
  try {
    const params = new URLSearchParams({ key_id: key.id, since: days[0] });
    series = usageSeries(await adminApi(`/api/v1/usage?${params}`));
  } catch (error) {
    toast(`Usage could not be loaded: ${error.message}`, "error");
  }
  if (detailKey !== key) return;
  const byDay = new Map(series.map((item) => [item.day, item]));
  const todayRow = byDay.get(days[days.length - 1]) || { requests: 0, tokens: 0 };
  const total = series.reduce((sum, item) => sum + item.requests, 0);
  today.replaceChildren(
    todayTile("Requests today", fmt.number(todayRow.requests)),
    todayTile("Tokens today", fmt.number(todayRow.tokens)),
    todayTile("Requests, 30 days", fmt.number(total)),
    todayTile("Tokens, 30 days", fmt.number(series.reduce((sum, item) => sum + item.tokens, 0))),
  );
  document.getElementById("detail-usage-empty").hidden = total > 0;
  const spec = {
    type: "bar",
    labels: days.map((day) => day.slice(5)),
    datasets: [{ label: "Requests", data: days.map((day) => byDay.get(day)?.requests ?? 0) }],
  };
  if (detailChart) detailChart.update(spec);
  else detailChart = makeChart(document.getElementById("detail-chart"), spec);
}

document.getElementById("detail-edit").addEventListener("click", () => openForm(detailKey));
document.getElementById("detail-revoke").addEventListener("click", () => revoke(detailKey));
document.getElementById("detail-delete").addEventListener("click", () => remove(detailKey));

// --- revoke and delete ------------------------------------------------------------

function confirmAction(title, message, action) {
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-message").textContent = message;
  const button = document.getElementById("confirm-button");
  button.textContent = action;
  return new Promise((resolve) => {
    const onClick = () => {
      confirmDialog.close("confirm");
    };
    button.addEventListener("click", onClick, { once: true });
    confirmDialog.addEventListener(
      "close",
      () => {
        button.removeEventListener("click", onClick);
        resolve(confirmDialog.returnValue === "confirm");
      },
      { once: true },
    );
    confirmDialog.returnValue = "";
    confirmDialog.showModal();
  });
}

async function revoke(key) {
  const ok = await confirmAction(
    `Revoke “${key.name}”?`,
    "Requests with this key are refused from now on. Its usage history is kept.",
    "Revoke key",
  );
  if (!ok) return;
  try {
    await adminApi(`/api/v1/keys/${encodeURIComponent(key.id)}/revoke`, { method: "POST" });
    detailDialog.close();
    toast(`Revoked “${key.name}”.`, "success");
    await load();
  } catch (error) {
    toast(error.message, "error");
  }
}

async function remove(key) {
  const ok = await confirmAction(
    `Delete “${key.name}”?`,
    "The key and all of its usage history are deleted for good. To keep the history, revoke it instead.",
    "Delete for good",
  );
  if (!ok) return;
  try {
    await adminApi(`/api/v1/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
    detailDialog.close();
    toast(`Deleted “${key.name}”.`, "success");
    await load();
  } catch (error) {
    toast(error.message, "error");
  }
}

// --- wiring -----------------------------------------------------------------------

for (const dialog of [formDialog, detailDialog, confirmDialog]) wireDialog(dialog);
wireDialog(createdDialog, { sticky: true });
document.getElementById("new-key-button").addEventListener("click", () => openForm());
search.addEventListener("input", () => {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(restart, 250);
});
statusFilter.addEventListener("change", restart);
for (const button of document.querySelectorAll("[data-sort-button]")) {
  button.addEventListener("click", () => {
    const sort = button.dataset.sortButton;
    // A new column starts with what matters first: the latest, the busiest, A before Z.
    if (view.sort === sort) view.order = view.order === "desc" ? "asc" : "desc";
    else view.order = sort === "name" ? "asc" : "desc";
    view.sort = sort;
    restart();
  });
}
sortSelect.addEventListener("change", () => {
  [view.sort, view.order] = sortSelect.value.split(":");
  restart();
});
previous.addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE_SIZE);
  load();
});
next.addEventListener("click", () => {
  view.offset += PAGE_SIZE;
  load();
});

const openNew = new URLSearchParams(window.location.search).get("new") === "1";
viewFromUrl();
await load();
if (openNew) openForm();
