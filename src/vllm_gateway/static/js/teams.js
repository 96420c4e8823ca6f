// The teams page: list, create, edit limits and budgets, spend this month.
import { adminApi, el, fmt } from "./common.js";
import { attempt, cell, formValues, listOf, money, showError } from "./org.js";

const body = document.getElementById("teams-body");
const form = document.getElementById("team-form");
const canWrite = body.dataset.canWrite === "true";
const LIMITS = ["daily_requests", "rpm", "daily_tokens", "max_concurrency"];

function limits(team) {
  const parts = LIMITS.filter((name) => team[name] !== null).map(
    (name) => `${name.replace("_", " ")} ${fmt.number(team[name])}`,
  );
  return parts.join(", ") || "unlimited";
}

function budgets(team) {
  const parts = [];
  if (team.daily_budget_usd !== null) parts.push(`${money(team.daily_budget_usd)}/day`);
  if (team.monthly_budget_usd !== null) parts.push(`${money(team.monthly_budget_usd)}/month`);
  return parts.join(", ") || "none";
}

function edit(team) {
  form.querySelector("#t-id").value = team.id;
  form.querySelector("#t-name").value = team.name;
  for (const name of [...LIMITS, "daily_budget_usd", "monthly_budget_usd"]) {
    form.querySelector(`#t-${name}`).value = team[name] ?? "";
  }
  form.querySelector("#t-models").value = team.models.join(", ");
  form.querySelector("#team-save span").textContent = "Save team";
}

function members(team, usage) {
  // The team's keys with their usage and cost over the last 30 days.
  const lines = usage.by_key.map((key) =>
    el(
      "li",
      { dataset: { key: key.key_id } },
      `${key.name ?? key.key_id}: ${fmt.number(key.requests)} requests, ` +
        `${fmt.number(Number(key.prompt_tokens) + Number(key.completion_tokens))} tokens, ${money(key.cost_usd)}`,
    ),
  );
  const text = `${fmt.number(team.key_count)} keys · last 30 days: ${fmt.number(usage.requests)} requests, ${money(usage.cost_usd)}`;
  return el(
    "tr",
    { hidden: true, "data-testid": "team-members" },
    el("td", { class: "table-cell", colspan: "7" }, el("p", { class: "text-sm" }, text), el("ul", { class: "mt-2 text-sm" }, lines)),
  );
}

async function row(team) {
  let spent = "—";
  let detail = null;
  try {
    const usage = await adminApi(`/api/v1/teams/${encodeURIComponent(team.id)}/usage`);
    spent = money(usage.spent_this_month_usd);
    detail = members(team, usage);
  } catch {
    // A role without the team's usage simply sees no spend.
  }
  const actions = el("td", { class: "table-cell text-right" });
  if (detail) {
    actions.append(
      el("button", { type: "button", class: "btn btn-ghost", onclick: () => { detail.hidden = !detail.hidden; } }, "Keys"),
    );
  }
  if (canWrite) {
    actions.append(
      el("button", { type: "button", class: "btn btn-ghost", onclick: () => edit(team) }, "Edit"),
      el("button", { type: "button", class: "btn btn-ghost", onclick: () => remove(team) }, "Delete"),
    );
  }
  const main = el(
    "tr",
    { dataset: { team: team.id } },
    cell(team.name, "font-medium"),
    cell(fmt.number(team.key_count)),
    cell(limits(team)),
    cell(budgets(team)),
    cell(spent),
    cell(team.models.join(", ") || "all"),
    actions,
  );
  return detail ? [main, detail] : [main];
}

async function load() {
  try {
    const teams = await adminApi("/api/v1/teams");
    const rows = (await Promise.all(teams.data.map(row))).flat();
    body.replaceChildren(...rows);
    if (!rows.length) body.append(el("tr", {}, cell("No teams yet.", "text-slate-500")));
    showError(null);
  } catch (error) {
    showError(error);
  }
}

async function remove(team) {
  if (!window.confirm(`Delete the team ${team.name}? Its keys stay, outside any team.`)) return;
  await attempt(() => adminApi(`/api/v1/teams/${team.id}`, { method: "DELETE" }), "Team deleted");
  await load();
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const values = formValues(form);
  values.models = listOf(values.models);
  const id = form.querySelector("#t-id").value;
  const request = id
    ? adminApi(`/api/v1/teams/${id}`, { method: "PATCH", body: values })
    : adminApi("/api/v1/teams", { method: "POST", body: values });
  await attempt(() => request, id ? "Team saved" : "Team created");
  form.reset();
  form.querySelector("#t-id").value = "";
  form.querySelector("#team-save span").textContent = "Create team";
  await load();
});

load();
