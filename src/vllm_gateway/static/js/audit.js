// The audit log page: newest first, filtered by action, paged backwards.
import { adminApi, el, fmt } from "./common.js";
import { cell, showError } from "./org.js";

const body = document.getElementById("audit-body");
const more = document.getElementById("audit-more");
const action = document.getElementById("audit-action");
let before = null;

function changed(record) {
  const after = record.after || {};
  const was = record.before || {};
  const names = Object.keys(after).filter((name) => JSON.stringify(after[name]) !== JSON.stringify(was[name]));
  if (!record.before) return record.after ? "created" : "—";
  if (!record.after) return "deleted";
  return names.map((name) => `${name}: ${JSON.stringify(was[name])} → ${JSON.stringify(after[name])}`).join("; ");
}

async function load(append = false) {
  const query = new URLSearchParams({ limit: "50" });
  if (action.value.trim()) query.set("action", action.value.trim());
  if (append && before) query.set("before_id", String(before));
  try {
    const page = await adminApi(`/api/v1/audit?${query}`);
    const rows = page.data.map((record) =>
      el(
        "tr",
        { dataset: { action: record.action } },
        cell(fmt.dateTime(record.ts)),
        cell(`${record.actor} (${record.role || "—"})`),
        cell(record.address),
        cell(record.action, "font-medium"),
        cell(`${record.target_type} ${record.target_id ?? ""}`),
        cell(changed(record), "text-xs"),
      ),
    );
    if (append) body.append(...rows);
    else body.replaceChildren(...rows);
    before = page.next_before_id;
    more.hidden = !before;
    showError(null);
  } catch (error) {
    showError(error);
  }
}

more.addEventListener("click", () => load(true));
action.addEventListener("change", () => load());
load();
