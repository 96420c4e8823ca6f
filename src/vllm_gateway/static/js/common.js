// Shared by every page: theme toggle, mobile menu, toasts and small helpers.
// Pages import it as "./common.js" so the browser keeps a single instance.

const THEME_KEY = "vgw.theme";
const CLIENT_KEY = "vgw.clientKey";

/** An error answer from the gateway, in OpenAI's shape when it has one. */
export class ApiError extends Error {
  constructor(status, message, code = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Reads an error response into an ApiError (OpenAI's shape, FastAPI's, or none). */
export async function errorFrom(response) {
  let message = response.statusText || `HTTP ${response.status}`;
  let code = null;
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error) {
      message = body.error.message || message;
      code = body.error.code || null;
    } else if (body && typeof body.error === "string") {
      message = body.error;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : formatDetail(body.detail);
    }
  } catch {
    // Not JSON: keep the status text.
  }
  const retry = Number.parseFloat(response.headers.get("Retry-After") ?? "");
  return new ApiError(response.status, message, code, Number.isFinite(retry) ? retry : null);
}

function formatDetail(detail) {
  if (!Array.isArray(detail)) return String(detail);
  return detail
    .map((item) => `${(item.loc || []).slice(1).join(".")}: ${item.msg}`)
    .join("; ");
}

/** The CSRF token of the admin session, from the page's <meta name="csrf-token">. */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") ?? "";
}

/** Calls the admin JSON API with the session cookie; changes carry the CSRF token. */
export async function adminApi(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    const next = encodeURIComponent(window.location.pathname + window.location.search);
    window.location.assign(`/login?next=${next}`);
    throw new ApiError(401, "Your session has ended; please log in again.");
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Builds an element; strings become text nodes, so nothing is ever parsed as HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A Font Awesome icon element (solid unless the name says "fa-regular"/"fa-brands"). */
export function icon(name, extra = "") {
  const family = /\bfa-(regular|brands)\b/.test(name) ? "" : "fa-solid ";
  return el("i", { class: `${family}${name} ${extra}`.trim(), "aria-hidden": "true" });
}

/**
 * Shows a short message in the corner of the page; `action` ({label, run}) adds a button,
 * e.g. Undo, and keeps the message up longer.
 */
export function toast(message, kind = "info", action = null) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const styles = {
    info: "alert-info",
    success: "alert-info",
    error: "alert-error",
    warning: "alert-warning",
  };
  const icons = {
    info: "fa-circle-info",
    success: "fa-circle-check",
    error: "fa-triangle-exclamation",
    warning: "fa-triangle-exclamation",
  };
  const item = el(
    "div",
    { class: `alert ${styles[kind] || styles.info} pointer-events-auto items-center shadow-lg`, role: "status" },
    icon(icons[kind] || icons.info),
    el("span", { class: "flex-1" }, message),
  );
  const dismiss = () => {
    item.remove();
    if (!box.childElementCount && box.matches(":popover-open")) box.hidePopover();
  };
  if (action) {
    item.append(
      el(
        "button",
        {
          type: "button",
          class: "btn btn-secondary btn-sm",
          onclick: () => {
            dismiss();
            action.run();
          },
        },
        action.label,
      ),
    );
  }
  box.append(item);
  // A popover sits in the top layer: shown again, it stacks above any open modal dialog.
  if (box.hidePopover && box.showPopover) {
    if (box.matches(":popover-open")) box.hidePopover();
    box.showPopover();
  }
  window.setTimeout(dismiss, action ? 10000 : kind === "error" ? 8000 : 4000);
}

/** Copies text to the clipboard (falls back to a hidden field where the API is missing). */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const field = el("textarea", { class: "fixed -left-[9999px]", readonly: true });
  field.value = text;
  document.body.append(field);
  field.select();
  document.execCommand("copy");
  field.remove();
}

const numberFormat = new Intl.NumberFormat();
const compactFormat = new Intl.NumberFormat(undefined, {
  notation: "compact",
  maximumFractionDigits: 1,
});

/** Number formatting shared by the pages. */
export const fmt = {
  number(value) {
    return value === null || value === undefined ? "—" : numberFormat.format(value);
  },
  compact(value) {
    return value === null || value === undefined ? "—" : compactFormat.format(value);
  },
  percent(ratio) {
    if (ratio === null || ratio === undefined) return "—";
    return `${(ratio * 100).toFixed(ratio > 0 && ratio < 0.1 ? 2 : 1)}%`;
  },
  ms(value) {
    if (value === null || value === undefined) return "—";
    if (value >= 10000) return `${(value / 1000).toFixed(1)} s`;
    return `${Math.round(value)} ms`;
  },
  limit(value) {
    return value === null || value === undefined ? "unlimited" : numberFormat.format(value);
  },
  dateTime(value) {
    const date = toDate(value);
    return date ? date.toLocaleString() : "—";
  },
  time(value) {
    const date = toDate(value);
    return date ? date.toLocaleTimeString() : "—";
  },
  date(value) {
    const date = toDate(value);
    return date ? date.toLocaleDateString() : "—";
  },
  relative(value) {
    const date = toDate(value);
    if (!date) return "never";
    const seconds = Math.round((Date.now() - date.getTime()) / 1000);
    const future = seconds < 0;
    const abs = Math.abs(seconds);
    let text;
    if (abs < 45) text = `${abs} s`;
    else if (abs < 2700) text = `${Math.round(abs / 60)} min`;
    else if (abs < 86400 * 1.5) text = `${Math.round(abs / 3600)} h`;
    else text = `${Math.round(abs / 86400)} d`;
    return future ? `in ${text}` : `${text} ago`;
  },
};

/** Dates from the API: ISO strings or epoch seconds. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The client key the visitor pasted; kept for this tab only, sent only to this gateway. */
export const clientKey = {
  get() {
    try {
      return window.sessionStorage.getItem(CLIENT_KEY) || "";
    } catch {
      return "";
    }
  },
  set(value) {
    window.sessionStorage.setItem(CLIENT_KEY, value);
  },
  clear() {
    window.sessionStorage.removeItem(CLIENT_KEY);
  },
};

/**
 * Gives every cell of `tbody` its column's name (data-label), so a .responsive-table can show
 * each row as a card on a small screen, every value named.
 */
export function labelRows(tbody) {
  const heads = [...(tbody.closest("table")?.querySelectorAll("thead th") ?? [])].map((th) =>
    th.textContent.trim(),
  );
  for (const row of tbody.rows) {
    [...row.cells].forEach((cell, index) => {
      if (heads[index] && !cell.hasAttribute("colspan")) cell.dataset.label = heads[index];
    });
  }
}

/** Whether dark mode is on right now. */
export function isDark() {
  return document.documentElement.classList.contains("dark");
}

/** Closes a <dialog> from its data-close buttons, and from its backdrop unless `sticky`. */
export function wireDialog(dialog, { sticky = false } = {}) {
  for (const button of dialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => dialog.close());
  }
  if (sticky) {
    // Escape must not close it either: the dialog holds something shown only once.
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    return;
  }
  // A click on the backdrop (the dialog element itself, outside its panel) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}

function setupTheme() {
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    button.addEventListener("click", () => {
      const dark = !isDark();
      document.documentElement.classList.toggle("dark", dark);
      try {
        window.localStorage.setItem(THEME_KEY, dark ? "dark" : "light");
      } catch {
        // Private mode: the choice lasts for this page only.
      }
      document.dispatchEvent(new CustomEvent("vgw:theme", { detail: { dark } }));
    });
  }
}

function setupMenu() {
  const button = document.querySelector("[data-menu-toggle]");
  const menu = document.getElementById("mobile-menu");
  if (!button || !menu) return;
  button.addEventListener("click", () => {
    menu.hidden = !menu.hidden;
    button.setAttribute("aria-expanded", String(!menu.hidden));
  });
}

/** Every .responsive-table names its cells as its rows change, whoever renders them. */
function setupResponsiveTables() {
  for (const body of document.querySelectorAll(".responsive-table tbody")) {
    labelRows(body);
    new MutationObserver(() => labelRows(body)).observe(body, { childList: true });
  }
}

setupTheme();
setupMenu();
setupResponsiveTables();
