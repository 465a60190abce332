// The onnxruntime-web adapter in headless Chromium (issue 17): the page (test-browser/page.ts,
// bundled with esbuild) runs a whole device with onnxruntime-web's WASM backend and the
// conformance vectors; this test serves it over HTTP on loopback and drives Chromium with
// playwright-core. Needs Debian's chromium (`apt-get install -y chromium`), or
// POCKETML_CHROMIUM=<path>: `make test-ts-browser`, part of `make test` (.ci/run installs it).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const vectors = resolve(pkg, "..", "..", "conformance");
const ortDist = join(pkg, "node_modules", "onnxruntime-web", "dist");
const types = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
};
let server;
let base;
let bundle;

function inside(root, path) {
  const full = normalize(join(root, path));
  return full.startsWith(root) && existsSync(full) ? full : null;
}

before(async () => {
  const out = await build({
    entryPoints: [join(here, "page.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
  });
  bundle = out.outputFiles[0].contents;
  server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    let body = null;
    let file = null;
    if (path === "/") body = Buffer.from('<!doctype html><meta charset="utf-8"><script type="module" src="/page.js"></script>');
    else if (path === "/page.js") body = Buffer.from(bundle);
    else if (path.startsWith("/ort/")) file = inside(ortDist, path.slice(5));
    else if (path.startsWith("/vectors/")) file = inside(vectors, path.slice(9));
    if (file !== null) body = readFileSync(file);
    if (body === null) {
      res.writeHead(404).end();
      return;
    }
    const ext = file !== null ? extname(file) : path === "/" ? ".html" : ".js";
    res.writeHead(200, { "Content-Type": types[ext] ?? "application/octet-stream" });
    res.end(body);
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => server?.close());

it("onnxruntime-web in headless Chromium: a whole device reproduces the prediction vectors; IndexedDB resumes a cut download after a reload", async () => {
  const executablePath = process.env.POCKETML_CHROMIUM ?? "/usr/bin/chromium";
  assert.ok(existsSync(executablePath), `no Chromium at ${executablePath}: apt-get install -y chromium, or set POCKETML_CHROMIUM`);
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on("console", (m) => logs.push(m.text()));
    page.on("pageerror", (e) => logs.push(String(e)));
    await page.goto(base);
    await page.waitForFunction(() => window.__pocketml !== undefined, null, { timeout: 60_000 });
    const result = await page.evaluate(() => window.__pocketml);
    assert.equal(result.error ?? null, null, `${JSON.stringify(result)}\n${logs.join("\n")}`);
    assert.equal(result.status, "updated");
    const predictions = JSON.parse(readFileSync(join(vectors, "predictions.json"), "utf8"));
    const half = Math.floor(result.indexeddb.size / 2);
    assert.deepEqual(result.indexeddb.cut, ["failed", "unavailable"]);
    assert.deepEqual(result.indexeddb.resumed, ["updated", result.indexeddb.size - half, true]);
    assert.deepEqual(result.indexeddb.contract, [[1, 2, 3], 3, 1, [9], null, null, [5], true]);
    assert.equal(result.indexeddb.second, "conflict");
    predictions.cases.forEach((c, i) => {
      const got = result.results[i];
      assert.deepEqual([got.label, got.source], [c.label, "local"]);
      for (const [j, want] of c.probabilities.entries()) assert.ok(Math.abs(got.probabilities[j] - want) <= predictions.tolerance);
    });
  } finally {
    await browser.close();
  }
});
