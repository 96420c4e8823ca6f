// Helpers of the organisation pages (teams, prices, users, audit).
import { el, toast } from "./common.js";

/** Shows (or, with null, hides) the page's error box. */
export function showError(error) {
  const box = document.getElementById("org-error");
  if (!box) return;
  box.hidden = !error;
  box.querySelector("span").textContent = error ? error.message : "";
}

/** A table cell holding text (never HTML). */
export function cell(text, extra = "") {
  return el("td", { class: `table-cell ${extra}`.trim() }, text ?? "—");
}

/** A form's fields as the API wants them: numbers as numbers, empty numbers as null. */
export function formValues(form) {
  const values = {};
  for (const input of form.querySelectorAll("input, select")) {
    if (!input.name || input.type === "hidden") continue;
    const raw = input.value.trim();
    if (input.type === "number") values[input.name] = raw === "" ? null : Number(raw);
    else values[input.name] = raw;
  }
  return values;
}

/** A comma-separated list as an array of non-empty names. */
export function listOf(text) {
  return (text || "").split(",").map((part) => part.trim()).filter(Boolean);
}

/** Runs an action, reporting success as a toast and failure in the error box. */
export async function attempt(action, success) {
  try {
    await action();
    showError(null);
    if (success) toast(success, "success");
  } catch (error) {
    showError(error);
  }
}

export function money(value) {
  return value === null || value === undefined ? "—" : `$${Number(value).toFixed(4)}`;
}
