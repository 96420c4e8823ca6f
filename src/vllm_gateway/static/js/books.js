// How the pages name the books: why a request was refused, and one line per key or model.
import { el, fmt } from "./common.js";

const REASON_LABELS = {
  invalid_api_key: "bad key",
  key_revoked: "revoked key",
  key_expired: "expired key",
  model_not_allowed: "model not allowed",
  model_not_found: "unknown model",
  model_required: "no model named",
  requests_per_minute: "per-minute limit",
  daily_requests: "daily request limit",
  daily_tokens: "daily token limit",
  max_concurrency: "concurrency limit",
};

/** A refusal reason in words ("daily_requests" → "daily request limit"). */
export function reasonLabel(reason) {
  return REASON_LABELS[reason] || String(reason || "refused").replaceAll("_", " ");
}

/** "12 per-minute limit · 3 bad key · 2 more": the biggest reasons first. */
export function reasonsNote(reasons, most = 2) {
  const entries = Object.entries(reasons || {});
  if (!entries.length) return "";
  const shown = entries.slice(0, most).map(([reason, count]) => `${fmt.number(count)} ${reasonLabel(reason)}`);
  if (entries.length > most) shown.push(`${entries.length - most} more`);
  return shown.join(" · ");
}

/** One line of a key's or model's books: admitted, refused, failed, tokens. */
export function booksLine(item) {
  const parts = [`${fmt.number(item.requests)} req`];
  if (item.rejected) parts.push(`${fmt.number(item.rejected)} refused`);
  if (item.errors) parts.push(`${fmt.number(item.errors)} failed`);
  parts.push(`${fmt.compact(item.total_tokens)} tok`);
  return parts.join(" · ");
}

/** Fills `list` with one line per refusal reason (most frequent first), or `none`. */
export function renderRefusals(list, reasons, none) {
  const entries = Object.entries(reasons || {});
  if (!entries.length) {
    list.replaceChildren(el("li", { class: "text-slate-600 dark:text-slate-400" }, none));
    return;
  }
  list.replaceChildren(
    ...entries.map(([reason, count]) =>
      el(
        "li",
        { class: "flex items-baseline justify-between gap-3", dataset: { reason } },
        el("span", { class: "min-w-0 truncate", title: reason }, reasonLabel(reason)),
        el("span", { class: "shrink-0 font-medium tabular-nums" }, fmt.number(count)),
      ),
    ),
  );
}
