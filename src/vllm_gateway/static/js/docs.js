// Swagger UI for the admin API, served from static/vendor (no CDN, no inline script).
const target = document.getElementById("swagger-ui");
window.SwaggerUIBundle({
  url: target.dataset.openapiUrl,
  domNode: target,
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
