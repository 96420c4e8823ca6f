// "My usage": a client pastes its own key and sees that key's limits and usage,
// read from /api/v1/me with the key itself (no admin access, nothing of other keys).
import { makeChart } from "./charts.js";
import { clientKey, el, errorFrom, fmt } from "./common.js";

const $ = (id) => document.getElementById(id);
const form = $("usage-key-form");
const input = $("usage-key");
const errorBox = $("usage-error");
const result = $("usage-result");
const STATUS_BADGES = { active: "badge-green", revoked: "badge-red", expired: "badge-amber" };

let chart = null;

function showError(message) {
  errorBox.hidden = !message;
  errorBox.querySelector("span").textContent = message || "";
}

function meter(label, used, limit, note = "") {
  const unlimited = limit === null || limit === undefined;
  const ratio = unlimited || limit === 0 ? 0 : Math.min(1, used / limit);
  const color = ratio >= 0.9 ? "bg-rose-500" : ratio >= 0.7 ? "bg-amber-500" : "bg-indigo-500";
  const bar = el("div", { class: `h-2 rounded-full ${color}` });
  bar.style.width = `${unlimited ? 0 : Math.max(ratio * 100, used > 0 ? 2 : 0)}%`;
  return el(
    "div",
    { class: "rounded-lg border border-slate-200 p-3 dark:border-slate-800", "data-meter": label },
    el(
      "div",
      { class: "flex items-baseline justify-between gap-2" },
      el("span", { class: "text-xs font-medium text-slate-500 dark:text-slate-400" }, label),
      el(
        "span",
        { class: "text-sm tabular-nums text-slate-900 dark:text-white" },
        unlimited ? `${fmt.number(used)} · no limit` : `${fmt.number(used)} / ${fmt.number(limit)}`,
      ),
    ),
    el("div", { class: "mt-2 h-2 rounded-full bg-slate-100 dark:bg-slate-800" }, bar),
    note ? el("p", { class: "mt-1.5 text-xs text-slate-500 dark:text-slate-400" }, note) : null,
  );
}

function detail(label, value) {
  return el(
    "div",
    {},
    el("dt", { class: "text-xs text-slate-500 dark:text-slate-400" }, label),
    el("dd", { class: "mt-0.5 break-words text-slate-900 dark:text-slate-100" }, value),
  );
}

function pick(object, ...names) {
  for (const name of names) {
    if (object && object[name] !== undefined) return object[name];
  }
  return undefined;
}

function render(me) {
  const key = me.key || me;
  const limits = me.limits || key;
  const today = me.today || me.usage_today || me.usage || {};
  $("usage-name").textContent = key.name;
  $("usage-sub").textContent = [key.prefix, key.id].filter(Boolean).join(" · ");
  const status = $("usage-status");
  status.className = `badge ${STATUS_BADGES[key.status] || "badge-slate"}`;
  status.textContent = key.status || "active";

  const todayTokens =
    pick(today, "total_tokens", "tokens") ??
    (today.prompt_tokens ?? 0) + (today.completion_tokens ?? 0);
  const meters = [
    meter("Requests today", pick(today, "requests") ?? 0, limits.daily_requests, "Resets at 00:00 UTC"),
    meter("Tokens today", todayTokens, limits.daily_tokens, "Prompt and completion tokens"),
  ];
  if (limits.rpm !== null && limits.rpm !== undefined) {
    meters.push(meter("Requests this minute", pick(me, "requests_this_minute", "minute_requests") ?? 0, limits.rpm));
  }
  if (limits.max_concurrency !== null && limits.max_concurrency !== undefined) {
    meters.push(meter("Requests in flight", pick(me, "in_flight", "concurrent") ?? 0, limits.max_concurrency));
  }
  $("usage-meters").replaceChildren(...meters);

  const models = key.models || [];
  $("usage-fields").replaceChildren(
    detail("Allowed models", models.length ? models.join(", ") : "all models"),
    detail("Expires", key.expires_at ? fmt.dateTime(key.expires_at) : "never"),
    detail("Created", fmt.dateTime(key.created_at)),
    detail("Last used", key.last_used_at ? fmt.dateTime(key.last_used_at) : "never"),
    detail("Requests per minute", fmt.limit(limits.rpm)),
    detail("Concurrent requests", fmt.limit(limits.max_concurrency)),
  );

  const series = me.series || me.daily || me.days || [];
  $("usage-history-card").hidden = series.length === 0;
  if (series.length) {
    const spec = {
      type: "bar",
      labels: series.map((row) => (row.day || row.date || "").slice(5)),
      datasets: [{ label: "Requests", data: series.map((row) => row.requests ?? 0) }],
    };
    if (chart) chart.update(spec);
    else chart = makeChart($("usage-chart"), spec);
  }
  result.hidden = false;
}

async function show(key) {
  showError("");
  let response;
  try {
    response = await fetch("/api/v1/me", {
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      credentials: "omit",
    });
  } catch {
    showError("The gateway could not be reached.");
    return;
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    result.hidden = true;
    if (response.status === 401 || response.status === 403) clientKey.clear();
    showError(`This key was not accepted (${response.status}): ${error.message}`);
    $("usage-forget").hidden = true;
    return;
  }
  clientKey.set(key);
  $("usage-forget").hidden = false;
  render(await response.json());
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = input.value.trim();
  if (key) show(key);
});

$("usage-forget").addEventListener("click", () => {
  clientKey.clear();
  input.value = "";
  result.hidden = true;
  $("usage-forget").hidden = true;
});

const remembered = clientKey.get();
if (remembered) {
  input.value = remembered;
  show(remembered);
}
