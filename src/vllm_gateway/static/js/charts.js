// Chart.js with the pages' calm palette, redrawn when the theme changes.
import { isDark } from "./common.js";

const charts = new Set();

function palette() {
  const dark = isDark();
  return {
    grid: dark ? "rgba(148, 163, 184, 0.12)" : "rgba(100, 116, 139, 0.12)",
    text: dark ? "#94a3b8" : "#64748b",
    series: dark ? ["#818cf8", "#34d399", "#fbbf24"] : ["#4f46e5", "#059669", "#d97706"],
    // Named tones, so the books read the same on every chart: admitted, refused, failed.
    tones: dark
      ? { admitted: "#818cf8", refused: "#fbbf24", failed: "#fb7185", tokens: "#34d399" }
      : { admitted: "#4f46e5", refused: "#d97706", failed: "#e11d48", tokens: "#059669" },
  };
}

function themed(spec) {
  const colors = palette();
  const datasets = spec.datasets.map(({ tone, ...dataset }, index) => {
    const color = colors.tones[tone] || colors.series[index % colors.series.length];
    return {
      borderColor: color,
      backgroundColor: spec.type === "bar" ? `${color}cc` : `${color}22`,
      borderWidth: spec.type === "bar" ? 0 : 2,
      borderRadius: spec.type === "bar" ? 3 : 0,
      pointRadius: 0,
      pointHoverRadius: 3,
      tension: 0.3,
      fill: spec.type !== "bar",
      ...dataset,
    };
  });
  return {
    type: spec.type || "line",
    data: { labels: spec.labels, datasets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: {
          display: datasets.length > 1,
          labels: { color: colors.text, boxWidth: 10, boxHeight: 10 },
        },
        tooltip: { displayColors: datasets.length > 1 },
      },
      scales: {
        x: {
          stacked: Boolean(spec.stacked),
          grid: { display: false },
          ticks: { color: colors.text, maxTicksLimit: 8, maxRotation: 0 },
        },
        y: {
          stacked: Boolean(spec.stacked),
          beginAtZero: true,
          grid: { color: colors.grid },
          border: { display: false },
          ticks: { color: colors.text, precision: 0, maxTicksLimit: 5 },
        },
      },
    },
  };
}

/** A chart on `canvas` drawn from {type, labels, datasets}; update() redraws it. */
export function makeChart(canvas, spec) {
  if (!window.Chart) return null;
  const entry = { chart: new window.Chart(canvas, themed(spec)), spec };
  charts.add(entry);
  return {
    update(next) {
      entry.spec = next;
      const config = themed(next);
      entry.chart.data = config.data;
      entry.chart.update("none");
    },
    destroy() {
      entry.chart.destroy();
      charts.delete(entry);
    },
  };
}

document.addEventListener("vgw:theme", () => {
  for (const entry of charts) {
    const config = themed(entry.spec);
    entry.chart.options = config.options;
    entry.chart.data = config.data;
    entry.chart.update("none");
  }
});
