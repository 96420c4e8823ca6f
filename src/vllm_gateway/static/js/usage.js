// "My usage": a client pastes its own key and sees that key's limits and usage,
// read from /api/v1/me with the key itself (no admin access, nothing of other keys).
import { makeChart } from "./charts.js";
import { clientKey, el, errorFrom, fmt } from "./common.js";

const $ = (id) => document.getElementById(id);
const form = $("usage-key-form");
const input = $("usage-key");
const errorBox = $("usage-error");
const result = $("usage-result");

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

function render(me) {
  $("usage-name").textContent = me.name;
  $("usage-sub").textContent = `Key ${me.id}`;
  const status = $("usage-status");
  status.className = "badge badge-green";
  status.textContent = "active";

  const { limits, today } = me;
  $("usage-meters").replaceChildren(
    meter("Requests today", today.requests, limits.daily_requests, remainingNote(today.requests_remaining, "requests")),
    meter("Tokens today", today.total_tokens, limits.daily_tokens, remainingNote(today.tokens_remaining, "tokens")),
  );
  $("usage-fields").replaceChildren(
    detail("Allowed models", me.models.length ? me.models.join(", ") : "all models"),
    detail("Expires", me.expires_at ? fmt.dateTime(me.expires_at) : "never"),
    detail("Requests per minute", fmt.limit(limits.rpm)),
    detail("Concurrent requests", fmt.limit(limits.max_concurrency)),
    detail("Requests over 30 days", fmt.number(me.daily.reduce((sum, row) => sum + row.requests, 0))),
    detail("Tokens over 30 days", fmt.number(me.daily.reduce((sum, row) => sum + row.total_tokens, 0))),
  );

  $("usage-history-card").hidden = me.daily.length === 0;
  const spec = {
    type: "bar",
    labels: me.daily.map((row) => row.day.slice(5)),
    datasets: [
      { label: "Requests", data: me.daily.map((row) => row.requests), yAxisID: "y" },
    ],
  };
  if (chart) chart.update(spec);
  else chart = makeChart($("usage-chart"), spec);
  result.hidden = false;
}

function remainingNote(remaining, what) {
  const reset = "resets at 00:00 UTC";
  if (remaining === null) return `No daily limit · ${reset}`;
  const word = remaining === 1 ? what.replace(/s$/, "") : what; // "1 request left", not "1 requests"
  return `${fmt.number(remaining)} ${word} left · ${reset}`;
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
