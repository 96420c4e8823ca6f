// The prices page: the price per model, and setting one.
import { adminApi, el } from "./common.js";
import { attempt, cell, formValues, showError } from "./org.js";

const body = document.getElementById("prices-body");
const form = document.getElementById("price-form");

async function load() {
  try {
    const prices = await adminApi("/api/v1/prices");
    body.replaceChildren(
      ...prices.data.map((price) =>
        el(
          "tr",
          { dataset: { model: price.model } },
          cell(price.model, "font-medium"),
          cell(`$${price.input_per_million}`),
          cell(price.cached_input_per_million === null ? "as input" : `$${price.cached_input_per_million}`),
          cell(`$${price.output_per_million}`),
        ),
      ),
    );
    if (!prices.data.length) body.append(el("tr", {}, cell("No prices: requests cost nothing.")));
    showError(null);
  } catch (error) {
    showError(error);
  }
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const { model, ...price } = formValues(form);
  await attempt(
    () => adminApi(`/api/v1/prices/${encodeURIComponent(model)}`, { method: "PUT", body: price }),
    "Price set",
  );
  form.reset();
  await load();
});

load();
