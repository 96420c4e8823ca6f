// The dashboard's backends panel: /api/v1/backends every 2 s; drain and resume buttons.
import { adminApi, el, toast } from "./common.js";

const POLL_MS = 2000;
let previous = new Map(); // name -> [served, time]

const percent = (value) => (value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`);

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

function row(backend, now) {
  const draining = backend.state === "draining";
  const button = el("button", {
    type: "button",
    class: "btn btn-secondary",
    text: draining ? "Resume" : "Drain",
    onclick: () => act(backend.name, draining ? "resume" : "drain"),
  });
  const latency = backend.answer_latency_ms === null ? "–" : `${Math.round(backend.answer_latency_ms)} ms`;
  return el(
    "tr",
    { dataset: { backend: backend.name } },
    el("td", { class: "table-cell font-medium", text: backend.name }),
    el("td", { class: "table-cell", text: backend.stale ? `${backend.state} (stale)` : backend.state }),
    el("td", { class: "table-cell text-right", text: backend.in_flight }),
    el("td", { class: "table-cell text-right", text: backend.waiting }),
    el("td", { class: "table-cell text-right", text: percent(backend.kv_usage) }),
    el("td", { class: "table-cell text-right", text: percent(backend.prefix_hit_rate) }),
    el("td", { class: "table-cell text-right", text: rate(backend, now) }),
    el("td", { class: "table-cell text-right", text: latency }),
    el("td", { class: "table-cell" }, button),
  );
}

async function refresh() {
  const body = document.getElementById("fleet-backends");
  if (!body) return;
  const answer = await adminApi("/api/v1/backends");
  const now = Date.now();
  document.getElementById("fleet-routing").textContent =
    `routing: ${answer.routing}, waiting in the gateway: ${answer.waiting}`;
  body.replaceChildren(...answer.data.map((backend) => row(backend, now)));
  previous = new Map(answer.data.map((backend) => [backend.name, [backend.served, now]]));
}

refresh().catch((error) => toast(error.message, "error"));
setInterval(() => refresh().catch(() => {}), POLL_MS);
