// The API docs: the gateway's OpenAPI document (client and admin API) rendered as plain,
// accessible HTML in the pages' own light and dark styles (no Swagger UI, nothing from a CDN).
import { el } from "./common.js";

const root = document.getElementById("docs");
const toc = document.getElementById("docs-toc");
const METHOD_BADGES = { get: "badge-green", post: "badge-amber", patch: "badge-slate", delete: "badge-red", put: "badge-slate" };
const METHODS = ["get", "post", "put", "patch", "delete"];

let doc = null;

/** Text whose `backticked` parts become <code>, as the OpenAPI descriptions write them. */
function prose(tag, props, text) {
  const parts = String(text).split("`");
  return el(tag, props, ...parts.map((part, index) => (index % 2 ? el("code", { class: "font-mono text-xs" }, part) : part)));
}

function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/(^-|-$)/g, "");
}

function resolve(schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return { name, schema: doc.components?.schemas?.[name] || {} };
  }
  return { name: null, schema: schema || {} };
}

function typeOf(schema) {
  const { name, schema: resolved } = resolve(schema);
  if (name) return name;
  if (resolved.anyOf || resolved.oneOf) {
    return (resolved.anyOf || resolved.oneOf).map((part) => typeOf(part)).join(" | ");
  }
  if (resolved.type === "array") return `array of ${typeOf(resolved.items || {})}`;
  if (resolved.enum) return resolved.enum.map((value) => JSON.stringify(value)).join(" | ");
  return resolved.type || (resolved.properties ? "object" : "any");
}

/** A schema's fields as a nested list (refs followed, each at most once per branch). */
function schemaView(schema, seen = new Set()) {
  const { name, schema: resolved } = resolve(schema);
  if (name && seen.has(name)) return el("p", { class: "docs-note" }, `${name} (as above)`);
  const inner = new Set(seen);
  if (name) inner.add(name);
  const target = resolved.type === "array" ? resolve(resolved.items || {}).schema : resolved;
  const properties = target.properties || {};
  const entries = Object.entries(properties);
  if (!entries.length) {
    return el("p", { class: "docs-note" }, resolved.description || typeOf(schema));
  }
  const required = new Set(target.required || []);
  return el(
    "ul",
    { class: "docs-fields" },
    ...entries.map(([field, value]) => {
      const nested = resolve(value).schema;
      const child = nested.properties || (nested.type === "array" && resolve(nested.items || {}).schema.properties);
      return el(
        "li",
        {},
        el("code", { class: "docs-field" }, field),
        el("span", { class: "docs-type" }, typeOf(value)),
        required.has(field) ? el("span", { class: "badge badge-amber" }, "required") : null,
        nested.description || value.description ? prose("p", { class: "docs-note" }, value.description || nested.description) : null,
        child ? schemaView(value, inner) : null,
      );
    }),
  );
}

function parametersView(parameters) {
  if (!parameters?.length) return null;
  return el(
    "div",
    {},
    el("h4", { class: "docs-h4" }, "Parameters"),
    el(
      "ul",
      { class: "docs-fields" },
      ...parameters.map((parameter) =>
        el(
          "li",
          {},
          el("code", { class: "docs-field" }, parameter.name),
          el("span", { class: "docs-type" }, `${parameter.in} · ${typeOf(parameter.schema || {})}`),
          parameter.required ? el("span", { class: "badge badge-amber" }, "required") : null,
          parameter.description ? el("p", { class: "docs-note" }, parameter.description) : null,
        ),
      ),
    ),
  );
}

function bodyView(body) {
  if (!body?.content) return null;
  return el(
    "div",
    {},
    el("h4", { class: "docs-h4" }, "Request body"),
    ...Object.entries(body.content).map(([type, media]) =>
      el("div", {}, el("p", { class: "docs-note" }, type), schemaView(media.schema || {})),
    ),
  );
}

function responsesView(responses) {
  return el(
    "div",
    {},
    el("h4", { class: "docs-h4" }, "Responses"),
    el(
      "ul",
      { class: "space-y-2" },
      ...Object.entries(responses || {}).map(([status, answer]) => {
        const content = answer.content || {};
        const types = Object.keys(content);
        const json = content["application/json"];
        const headers = Object.keys(answer.headers || {});
        return el(
          "li",
          { class: "docs-response", dataset: { status } },
          el(
            "div",
            { class: "flex flex-wrap items-baseline gap-2" },
            el("span", { class: `badge font-mono ${status.startsWith("2") ? "badge-green" : "badge-red"}` }, status),
            prose("span", { class: "text-sm" }, answer.description || ""),
            types.length ? el("span", { class: "docs-note" }, types.join(", ")) : null,
          ),
          headers.length ? el("p", { class: "docs-note" }, `Headers: ${headers.join(", ")}`) : null,
          json?.schema && status.startsWith("2") ? schemaView(json.schema) : null,
          content["text/event-stream"]?.example
            ? el("pre", { class: "code-block mt-2", tabindex: "0" }, content["text/event-stream"].example)
            : null,
        );
      }),
    ),
  );
}

function operationView(path, method, operation) {
  const id = slug(operation.operationId || `${method}-${path}`);
  const auth = operation.security?.some((item) => "clientKeyBearer" in item) ? "client key" : null;
  return el(
    "details",
    { class: "docs-operation", id },
    el(
      "summary",
      { class: "docs-summary" },
      el("span", { class: `badge w-16 justify-center font-mono uppercase ${METHOD_BADGES[method] || "badge-slate"}` }, method),
      el("code", { class: "min-w-0 font-mono text-sm break-all" }, path),
      el("span", { class: "text-sm text-slate-600 dark:text-slate-400" }, operation.summary || ""),
    ),
    el(
      "div",
      { class: "space-y-4 border-t border-slate-200 px-4 py-4 dark:border-slate-800" },
      operation.description ? prose("p", { class: "text-sm" }, operation.description) : null,
      auth ? el("p", { class: "docs-note" }, `Authentication: a ${auth} (Bearer or x-api-key).`) : null,
      parametersView(operation.parameters),
      bodyView(operation.requestBody),
      responsesView(operation.responses),
    ),
  );
}

function render() {
  const groups = new Map((doc.tags || []).map((tag) => [tag.name, { tag, operations: [] }]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const name = operation.tags?.[0] || "other";
      if (!groups.has(name)) groups.set(name, { tag: { name }, operations: [] });
      groups.get(name).operations.push([path, method, operation]);
    }
  }
  const sections = [...groups.values()].filter((group) => group.operations.length);
  toc.replaceChildren(
    ...sections.map(({ tag }) => el("li", {}, el("a", { class: "link", href: `#tag-${slug(tag.name)}` }, tag.name))),
  );
  root.replaceChildren(
    ...sections.map(({ tag, operations }) =>
      el(
        "section",
        { id: `tag-${slug(tag.name)}`, "aria-labelledby": `tag-${slug(tag.name)}-title` },
        el("h2", { id: `tag-${slug(tag.name)}-title`, class: "text-lg font-semibold text-slate-900 capitalize dark:text-white" }, tag.name),
        tag.description ? prose("p", { class: "mt-1 text-sm text-slate-600 dark:text-slate-400" }, tag.description) : null,
        el("div", { class: "card mt-3 divide-y divide-slate-200 overflow-hidden dark:divide-slate-800" }, ...operations.map((args) => operationView(...args))),
      ),
    ),
  );
  // A link to one operation opens it.
  const target = window.location.hash && document.getElementById(window.location.hash.slice(1));
  if (target?.tagName === "DETAILS") target.open = true;
}

try {
  const response = await fetch(root.dataset.openapiUrl, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  doc = await response.json();
  render();
} catch (error) {
  root.replaceChildren(el("div", { class: "alert alert-error", role: "alert" }, `The OpenAPI document could not be loaded: ${error.message}`));
}
