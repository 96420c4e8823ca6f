// The dashboard's backends panel: /api/v1/backends every 2 s; drain and resume buttons.
import { adminApi, el, toast } from "./common.js";

const POLL_MS = 2000;
let previous = new Map(); // name -> [served, time]

const percent = (value) => (value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`);
const latency = (ms) => (ms === null ? "–" : `${Math.round(ms)} ms`);

function rate(row, now) {
  const before = previous.get(row.name);
  if (!before) return "–";
  const seconds = (now - before[1]) / 1000;
  return seconds > 0 ? ((row.served - before[0]) / seconds).toFixed(1) : "–";
}

async function act(name, action) {
  try {
    await adminApi(`/api/v1/backends/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    await refresh();
  } catch (error) {
    toast(error.message, "error");
  }
}

// The cells after the backend's name: its state, then numbers (right-aligned).
const CELLS = [
  (backend) => (backend.stale ? `${backend.state} (stale)` : backend.state),
  (backend) => backend.in_flight,
  (backend) => backend.waiting,
  (backend) => percent(backend.kv_usage),
  (backend) => percent(backend.prefix_hit_rate),
  rate,
  (backend) => latency(backend.answer_latency_ms),
];

// Rows are kept and updated in place: a poll that rebuilt them could swallow a click (the
// button under the pointer replaced between its mousedown and mouseup).
const rows = new Map(); // name -> { tr, cells, button, state }

function newRow(name) {
  const entry = { state: null };
  entry.button = el("button", {
    type: "button",
    class: "btn btn-secondary",
    onclick: () => act(name, entry.state === "draining" ? "resume" : "drain"),
  });
  entry.cells = CELLS.map((_, index) => el("td", { class: index ? "table-cell text-right" : "table-cell" }));
  entry.tr = el(
    "tr",
    { dataset: { backend: name } },
    el("td", { class: "table-cell font-medium", text: name }),
    ...entry.cells,
    el("td", { class: "table-cell" }, entry.button),
  );
  return entry;
}

function update(entry, backend, now) {
  entry.state = backend.state;
  CELLS.forEach((text, index) => {
    const value = String(text(backend, now));
    if (entry.cells[index].textContent !== value) entry.cells[index].textContent = value;
  });
  const label = backend.state === "draining" ? "Resume" : "Drain";
  if (entry.button.textContent !== label) entry.button.textContent = label;
}

let asked = 0; // the last poll sent, and the last one shown: an older answer never wins
let shown = 0;

async function refresh() {
  const body = document.getElementById("fleet-backends");
  if (!body) return;
  const mine = ++asked;
  const answer = await adminApi("/api/v1/backends");
  if (mine < shown) return; // a poll sent before a drain, answered after it
  shown = mine;
  const now = Date.now();
  document.getElementById("fleet-routing").textContent =
    `routing: ${answer.routing}, waiting in the gateway: ${answer.waiting}`;
  const names = new Set(answer.data.map((backend) => backend.name));
  for (const name of [...rows.keys()]) if (!names.has(name)) rows.delete(name);
  const ordered = answer.data.map((backend) => {
    const entry = rows.get(backend.name) ?? newRow(backend.name);
    rows.set(backend.name, entry);
    update(entry, backend, now);
    return entry.tr;
  });
  const current = [...body.children];
  if (ordered.length !== current.length || ordered.some((tr, index) => tr !== current[index])) {
    body.replaceChildren(...ordered); // only when backends come, go or change order
  }
  previous = new Map(answer.data.map((backend) => [backend.name, [backend.served, now]]));
}

refresh().catch((error) => toast(error.message, "error"));
setInterval(() => refresh().catch(() => {}), POLL_MS);
