// Usage reports (admin): the books over a range of days from /api/v1/usage, as charts and
// tables, filtered by key and model; the same selection exports as CSV.
import { booksLine, renderRefusals } from "./books.js";
import { makeChart } from "./charts.js";
import { adminApi, el, fmt, labelRows } from "./common.js";

const form = document.getElementById("report-form");
const since = document.getElementById("r-since");
const until = document.getElementById("r-until");
const keySelect = document.getElementById("r-key");
const modelSelect = document.getElementById("r-model");
const teamSelect = document.getElementById("r-team");
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 });
const exportLink = document.getElementById("export-csv");
const errorBox = document.getElementById("report-error");

const knownKeys = new Map();
const knownModels = new Set();
let requestsChart = null;
let tokensChart = null;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

/** The selection from the page's URL, defaulting to the last 30 UTC days. */
function selectionFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86400 * 1000);
  return {
    since: params.get("since") || isoDay(monthAgo),
    until: params.get("until") || isoDay(today),
    key_id: params.get("key_id") || "",
    model: params.get("model") || "",
    team_id: params.get("team_id") || "",
  };
}

function query(selection) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(selection)) if (value) params.set(name, value);
  return params.toString();
}

function fillSelect(select, entries, chosen) {
  const first = select.options[0];
  const options = [...entries].map(([value, label]) => el("option", { value }, label));
  select.replaceChildren(first, ...options);
  select.value = chosen;
}

function setTotal(name, value, note = "") {
  document.querySelector(`[data-total="${name}"]`).textContent = value;
  document.querySelector(`[data-total-note="${name}"]`).textContent = note || "\u00a0";
}

function cell(value, extra = "") {
  return el("td", { class: `table-cell tabular-nums ${extra}`.trim() }, value);
}

function number(value) {
  return cell(fmt.number(value), "text-right");
}

function emptyRow(tbody, columns, text) {
  tbody.replaceChildren(
    el("tr", {}, el("td", { class: "table-cell text-slate-600 dark:text-slate-400", colspan: String(columns) }, text)),
  );
}

function renderTotals(report) {
  const totals = report.totals;
  const asked = totals.requests + totals.rejected;
  setTotal("requests", fmt.number(totals.requests), asked ? `${fmt.percent(totals.requests / asked)} of asked` : "");
  setTotal("rejected", fmt.number(totals.rejected), asked ? `${fmt.percent(totals.rejected / asked)} of asked` : "");
  setTotal("errors", fmt.number(totals.errors), totals.requests ? `${fmt.percent(totals.errors / totals.requests)} of admitted` : "");
  setTotal("cancelled", fmt.number(totals.cancelled), "neither refused nor failed");
  setTotal("cost_usd", money.format(totals.cost_usd ?? 0), "at the models' prices");
  setTotal(
    "total_tokens",
    fmt.compact(totals.total_tokens),
    `${fmt.compact(totals.prompt_tokens)} in · ${fmt.compact(totals.completion_tokens)} out`,
  );
}

function renderCharts(report) {
  const labels = report.daily.map((day) => day.day.slice(5));
  const requestsSpec = {
    type: "bar",
    stacked: true,
    labels,
    datasets: [
      { label: "Admitted, answered", tone: "admitted", data: report.daily.map((d) => d.requests - d.errors) },
      { label: "Failed", tone: "failed", data: report.daily.map((d) => d.errors) },
      { label: "Refused", tone: "refused", data: report.daily.map((d) => d.rejected) },
    ],
  };
  const tokensSpec = {
    type: "bar",
    stacked: true,
    labels,
    datasets: [
      { label: "Prompt", tone: "admitted", data: report.daily.map((d) => d.prompt_tokens) },
      { label: "Completion", tone: "tokens", data: report.daily.map((d) => d.completion_tokens) },
    ],
  };
  if (requestsChart) requestsChart.update(requestsSpec);
  else requestsChart = makeChart(document.getElementById("daily-requests-chart"), requestsSpec);
  if (tokensChart) tokensChart.update(tokensSpec);
  else tokensChart = makeChart(document.getElementById("daily-tokens-chart"), tokensSpec);
}

function keyLabel(item) {
  return item.name ?? `deleted key ${item.key_id}`;
}

function renderKeys(items) {
  const body = document.getElementById("report-keys");
  if (!items.length) return emptyRow(body, 6, "No usage in this range.");
  body.replaceChildren(
    ...items.map((item) =>
      el(
        "tr",
        { title: booksLine(item) },
        el(
          "td",
          { class: "table-cell" },
          el("a", { href: `/reports?${query({ ...selectionFromForm(), key_id: item.key_id })}`, class: "link break-all" }, keyLabel(item)),
        ),
        number(item.requests),
        number(item.rejected),
        number(item.errors),
        number(item.total_tokens),
        cell(money.format(item.cost_usd ?? 0), "text-right"),
      ),
    ),
  );
  labelRows(body);
}

function renderModels(items) {
  const body = document.getElementById("report-models");
  if (!items.length) return emptyRow(body, 4, "No usage in this range.");
  body.replaceChildren(
    ...items.map((item) =>
      el("tr", {}, cell(item.model, "font-mono text-xs"), number(item.requests), number(item.rejected), number(item.total_tokens)),
    ),
  );
  labelRows(body);
}

function renderDays(days) {
  const body = document.getElementById("report-days");
  const used = days.filter((d) => d.requests || d.rejected).reverse();
  if (!used.length) return emptyRow(body, 8, "No usage in this range.");
  body.replaceChildren(
    ...used.map((d) =>
      el(
        "tr",
        { dataset: { day: d.day } },
        cell(d.day, "whitespace-nowrap"),
        number(d.requests),
        number(d.rejected),
        number(d.errors),
        number(d.cancelled),
        number(d.prompt_tokens),
        number(d.completion_tokens),
        cell(money.format(d.cost_usd ?? 0), "text-right"),
      ),
    ),
  );
  labelRows(body);
}

function selectionFromForm() {
  return {
    since: since.value,
    until: until.value,
    key_id: keySelect.value,
    model: modelSelect.value,
    team_id: teamSelect.value,
  };
}

async function load(selection) {
  since.value = selection.since;
  until.value = selection.until;
  exportLink.href = `/api/v1/usage/export.csv?${query(selection)}`;
  try {
    const report = await adminApi(`/api/v1/usage?${query(selection)}`);
    for (const item of report.by_key) knownKeys.set(item.key_id, keyLabel(item));
    for (const item of report.by_model) knownModels.add(item.model);
    if (selection.key_id && !knownKeys.has(selection.key_id)) knownKeys.set(selection.key_id, selection.key_id);
    if (selection.model) knownModels.add(selection.model);
    fillSelect(keySelect, knownKeys, selection.key_id);
    fillSelect(modelSelect, [...knownModels].sort().map((model) => [model, model]), selection.model);
    renderTotals(report);
    renderCharts(report);
    renderRefusals(document.getElementById("report-refusals"), report.rejected_by_reason, "Nothing refused in this range.");
    renderKeys(report.by_key);
    renderModels(report.by_model);
    renderDays(report.daily);
    errorBox.hidden = true;
  } catch (error) {
    errorBox.hidden = false;
    errorBox.querySelector("span").textContent = `Could not load the report: ${error.message}`;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const selection = selectionFromForm();
  window.history.pushState(null, "", `/reports?${query(selection)}`);
  load(selection);
});

window.addEventListener("popstate", () => load(selectionFromUrl()));

/** The team filter, for those who may list the teams (none offered otherwise). */
async function loadTeams(chosen) {
  try {
    const teams = await adminApi("/api/v1/teams");
    fillSelect(teamSelect, teams.data.map((team) => [team.id, team.name]), chosen);
    document.getElementById("r-team-field").hidden = teams.data.length === 0;
  } catch {
    document.getElementById("r-team-field").hidden = true;
  }
}

const initial = selectionFromUrl();
loadTeams(initial.team_id);
load(initial);
