// The dashboard: live figures from /api/v1/stats and backend health from
// /api/v1/backends, refreshed every few seconds without reloading the page.
import { makeChart } from "./charts.js";
import { booksLine, reasonLabel, reasonsNote, renderRefusals } from "./books.js";
import { adminApi, el, fmt, labelRows } from "./common.js";

const REFRESH_MS = 5000;

const statusText = document.getElementById("live-status");
const liveDot = document.getElementById("live-dot");
const livePing = document.getElementById("live-ping");
const pauseButton = document.getElementById("pause-button");
const errorBox = document.getElementById("dashboard-error");

let paused = false;
let timer = 0;
let requestsChart = null;
let tokensChart = null;

function setStat(name, value, note = "") {
  const node = document.querySelector(`[data-stat="${name}"]`);
  if (node) node.textContent = value;
  const noteNode = document.querySelector(`[data-stat-note="${name}"]`);
  if (noteNode) noteNode.textContent = note || "\u00a0";
}

function minuteLabel(point) {
  const date = new Date(point.time);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function renderFigures(stats) {
  const today = stats.today;
  const series = stats.per_minute || [];
  const current = series.length ? series[series.length - 1] : { requests: 0, tokens: 0 };
  const hour = stats.last_hour;
  const latency = stats.latency_ms;
  setStat(
    "requests_today",
    fmt.number(today.requests),
    today.cancelled ? `sent to a backend · ${fmt.number(today.cancelled)} cancelled by the client` : "sent to a backend",
  );
  setStat("refused_today", fmt.number(today.rejected), reasonsNote(stats.rejected_by_reason) || "refused by the gateway");
  setStat(
    "failed_today",
    fmt.number(today.errors),
    `${fmt.percent(stats.error_rate)} of admitted, last hour`,
  );
  setStat(
    "tokens_today",
    fmt.compact(today.total_tokens),
    `${fmt.compact(today.prompt_tokens)} in · ${fmt.compact(today.completion_tokens)} out`,
  );
  setStat(
    "requests_per_minute",
    fmt.number(current.requests),
    `this minute · ${fmt.number(Math.round(hour.requests / 60))} avg · ${fmt.compact(current.tokens)} tok`,
  );
  setStat(
    "latency",
    `${fmt.ms(latency.p50)} / ${fmt.ms(latency.p95)}`,
    latency.p50 === null ? "no requests in the last hour" : "last hour",
  );
  setStat("in_flight", fmt.number(stats.in_flight), "right now");
  setStat("active_keys", fmt.number(stats.active_keys), `used today · ${fmt.number(stats.enabled_keys)} enabled`);

  const labels = series.map(minuteLabel);
  const requestsSpec = {
    type: "bar",
    stacked: true,
    labels,
    datasets: [
      // Failed requests are part of the admitted ones: drawn apart, not twice.
      { label: "Admitted, answered", tone: "admitted", data: series.map((point) => point.requests - point.errors) },
      { label: "Failed", tone: "failed", data: series.map((point) => point.errors) },
      { label: "Refused", tone: "refused", data: series.map((point) => point.rejected) },
    ],
  };
  const tokensSpec = {
    type: "line",
    labels,
    datasets: [{ label: "Tokens", tone: "tokens", data: series.map((point) => point.tokens) }],
  };
  if (requestsChart) requestsChart.update(requestsSpec);
  else requestsChart = makeChart(document.getElementById("requests-chart"), requestsSpec);
  if (tokensChart) tokensChart.update(tokensSpec);
  else tokensChart = makeChart(document.getElementById("tokens-chart"), tokensSpec);
}

function rankList(target, items, labelOf, isMono) {
  const list = document.getElementById(target);
  if (!items.length) {
    list.replaceChildren(el("li", { class: "text-sm text-slate-600 dark:text-slate-400" }, "No requests today yet."));
    return;
  }
  const top = Math.max(...items.map((item) => item.requests + item.rejected), 1);
  list.replaceChildren(
    ...items.map((item) => {
      const admitted = el("div", { class: "h-1.5 bg-indigo-500/80 dark:bg-indigo-400/80" });
      admitted.style.width = `${(item.requests / top) * 100}%`;
      const refused = el("div", { class: "h-1.5 bg-amber-500/80 dark:bg-amber-400/80" });
      refused.style.width = `${(item.rejected / top) * 100}%`;
      return el(
        "li",
        {},
        el("div", { class: `truncate text-sm ${isMono ? "font-mono text-xs" : ""}`, title: labelOf(item) }, labelOf(item)),
        el("div", { class: "mt-1 flex h-1.5 overflow-hidden rounded-full bg-slate-100 dark:bg-slate-800" }, admitted, refused),
        el("div", { class: "mt-0.5 text-xs tabular-nums text-slate-600 dark:text-slate-400" }, booksLine(item)),
      );
    }),
  );
}

/** What became of a request: served, failed, refused (with its reason) or cancelled. */
function outcomeBadge(item) {
  if (!item.admitted) {
    return el("span", { class: "badge badge-amber", title: item.reason || "" }, `${item.status} refused · ${reasonLabel(item.reason || "refused")}`);
  }
  if (item.status === 499) return el("span", { class: "badge badge-slate" }, "cancelled by client");
  const kind = item.status < 400 ? "badge-green" : "badge-red";
  const text = item.status < 400 ? String(item.status) : `${item.status} failed`;
  return el("span", { class: `badge ${kind} font-mono`, title: item.reason || "" }, text);
}

function renderRecent(items) {
  const body = document.getElementById("recent");
  if (!items.length) {
    body.replaceChildren(
      el("tr", {}, el("td", { class: "table-cell text-slate-500 dark:text-slate-400", colspan: "6" }, "No requests yet. Create a key and send one from the chat.")),
    );
    return;
  }
  body.replaceChildren(
    ...items.map((item) =>
      el(
        "tr",
        {},
        el("td", { class: "table-cell align-middle whitespace-nowrap text-xs text-slate-600 dark:text-slate-400", title: fmt.dateTime(item.time) }, fmt.time(item.time)),
        el("td", { class: "table-cell align-middle" }, item.key_name ?? `deleted key ${item.key_id}`),
        el("td", { class: "table-cell align-middle font-mono text-xs" }, item.model || "—"),
        el("td", { class: "table-cell align-middle" }, outcomeBadge(item)),
        el("td", { class: "table-cell align-middle text-right tabular-nums" }, fmt.number(item.total_tokens)),
        el("td", { class: "table-cell align-middle text-right tabular-nums" }, fmt.ms(item.latency_ms)),
      ),
    ),
  );
  labelRows(body);
}

function renderBackends(backends) {
  const list = document.getElementById("backends");
  if (!backends.length) {
    list.replaceChildren(el("li", { class: "py-2 text-sm text-slate-500" }, "No backend configured."));
    return;
  }
  list.replaceChildren(
    ...backends.map((backend) =>
      el(
        "li",
        { class: "py-2.5" },
        el(
          "div",
          { class: "flex items-center gap-2 text-sm" },
          el("span", {
            class: `inline-block h-2 w-2 shrink-0 rounded-full ${backend.healthy ? "bg-emerald-500" : "bg-rose-500"}`,
          }),
          el("span", { class: "min-w-0 flex-1 truncate font-mono text-xs" }, backend.name),
          el(
            "span",
            { class: `badge ${backend.healthy ? "badge-green" : "badge-red"}` },
            backend.healthy ? "up" : "down",
          ),
        ),
        el(
          "div",
          { class: "mt-1 pl-4 text-xs text-slate-500 dark:text-slate-400" },
          backend.healthy
            ? `${backend.models.length} model${backend.models.length === 1 ? "" : "s"} · ${fmt.ms(backend.latency_ms)} health check`
            : backend.error || "unreachable",
        ),
      ),
    ),
  );
}

async function refresh() {
  window.clearTimeout(timer);
  try {
    const [stats, backends] = await Promise.all([
      adminApi("/api/v1/stats"),
      adminApi("/api/v1/backends"),
    ]);
    renderFigures(stats);
    renderRefusals(document.getElementById("refusals"), stats.rejected_by_reason, "Nothing refused today.");
    rankList("top-keys", stats.top_keys, (item) => item.name ?? `deleted key ${item.key_id}`, false);
    rankList("top-models", stats.top_models, (item) => item.model, true);
    renderRecent(stats.recent);
    renderBackends(backends.data);
    errorBox.hidden = true;
    statusText.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
    liveDot.classList.replace("bg-rose-500", "bg-emerald-500");
  } catch (error) {
    errorBox.hidden = false;
    errorBox.querySelector("span").textContent = `Could not refresh: ${error.message}`;
    statusText.textContent = "Connection problem; retrying";
    liveDot.classList.replace("bg-emerald-500", "bg-rose-500");
  }
  if (!paused) timer = window.setTimeout(refresh, REFRESH_MS);
}

pauseButton.addEventListener("click", () => {
  paused = !paused;
  pauseButton.setAttribute("aria-pressed", String(paused));
  pauseButton.querySelector("span").textContent = paused ? "Resume" : "Pause";
  pauseButton.querySelector("i").className = `fa-solid ${paused ? "fa-play" : "fa-pause"}`;
  livePing.hidden = paused;
  if (paused) {
    window.clearTimeout(timer);
    statusText.textContent = "Paused";
  } else {
    refresh();
  }
});

// Hidden tabs need no live figures; catch up as soon as the tab is visible again.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !paused) refresh();
});

refresh();
