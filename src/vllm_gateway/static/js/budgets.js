// The dashboard's spend and budget alerts (issue 12): cost today and this month, latest alerts.
import { adminApi, el } from "./common.js";
import { money } from "./org.js";

const box = document.getElementById("budgets");

function utcDay(date) {
  return date.toISOString().slice(0, 10);
}

async function show() {
  const now = new Date();
  const monthStart = `${utcDay(now).slice(0, 8)}01`;
  let today, month, alerts;
  try {
    [today, month, alerts] = await Promise.all([
      adminApi(`/api/v1/usage?since=${utcDay(now)}`),
      adminApi(`/api/v1/usage?since=${monthStart}`),
      adminApi("/api/v1/alerts"),
    ]);
  } catch {
    return; // a role that may not read usage sees no spend
  }
  const list = el("ul", { class: "mt-3 space-y-1 text-sm", "data-testid": "budget-alerts" });
  for (const alert of alerts.data.slice(0, 10)) {
    list.append(
      el(
        "li",
        {},
        `${alert.subject_kind} ${alert.subject_id}: ${alert.threshold}% of its ${alert.period} budget ` +
          `(${money(alert.spent_usd)} of ${money(alert.budget_usd)})`,
      ),
    );
  }
  if (!alerts.data.length) list.append(el("li", { class: "text-slate-500" }, "No budget alerts."));
  box.replaceChildren(
    el("h2", { class: "text-base font-semibold text-slate-900 dark:text-white" }, "Spend and budgets"),
    el(
      "p",
      { class: "mt-2 text-sm", "data-testid": "spend" },
      `Cost today ${money(today.totals.cost_usd)} · this month ${money(month.totals.cost_usd)}`,
    ),
    list,
  );
  box.hidden = false;
}

show();
