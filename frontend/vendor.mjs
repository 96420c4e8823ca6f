// Copies the browser libraries the pages use from node_modules into static/vendor/
// (committed, so the gateway serves them offline and users need no Node.js).
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const vendor = join(here, "..", "src", "vllm_gateway", "static", "vendor");

const files = {
  "fontawesome/css/all.min.css": "@fortawesome/fontawesome-free/css/all.min.css",
  "fontawesome/LICENSE.txt": "@fortawesome/fontawesome-free/LICENSE.txt",
  "chartjs/chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
  "chartjs/LICENSE.md": "chart.js/LICENSE.md",
  "marked/marked.umd.js": "marked/lib/marked.umd.js",
  "marked/LICENSE.md": "marked/LICENSE.md",
  "dompurify/purify.min.js": "dompurify/dist/purify.min.js",
  "dompurify/LICENSE": "dompurify/LICENSE",
  "highlightjs/highlight.min.js": "@highlightjs/cdn-assets/highlight.min.js",
  "highlightjs/LICENSE": "@highlightjs/cdn-assets/LICENSE",
};
const fonts = ["fa-brands-400", "fa-regular-400", "fa-solid-900", "fa-v4compatibility"];

rmSync(vendor, { recursive: true, force: true });
for (const [target, source] of Object.entries(files)) {
  mkdirSync(dirname(join(vendor, target)), { recursive: true });
  cpSync(join(modules, source), join(vendor, target));
}
mkdirSync(join(vendor, "fontawesome", "webfonts"), { recursive: true });
for (const font of fonts) {
  for (const ext of ["woff2", "ttf"]) {
    const name = `${font}.${ext}`;
    cpSync(
      join(modules, "@fortawesome/fontawesome-free/webfonts", name),
      join(vendor, "fontawesome", "webfonts", name),
    );
  }
}
// axe-core is for the browser tests only (tests/e2e/test_accessibility.py): not served.
const testVendor = join(here, "..", "tests", "e2e", "vendor");
mkdirSync(testVendor, { recursive: true });
cpSync(join(modules, "axe-core/axe.min.js"), join(testVendor, "axe.min.js"));
cpSync(join(modules, "axe-core/LICENSE"), join(testVendor, "axe-core-LICENSE"));
console.log(`vendored ${Object.keys(files).length} files and ${fonts.length * 2} fonts into ${vendor}`);
