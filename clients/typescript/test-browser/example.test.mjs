// The web example (examples/web) in headless Chromium against a real pocketml server
// (conformance/serve.py, the conformance world): the page checks in as a `web` device, downloads
// and verifies the package into IndexedDB, predicts with onnxruntime-web, sends feedback and (with
// consent) one sample, which "Forget me" deletes on the server; after a reload it predicts again
// without downloading. Screenshots at phone and desktop width go to
// build-test/screenshots/. Needs `npm test`'s compiled helpers (test:browser compiles them).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startWorld } from "../build-test/test/server.js";
import { startExample } from "../examples/web/serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const vectors = resolve(pkg, "..", "..", "conformance");
const shots = join(pkg, "build-test", "screenshots");
const predictions = JSON.parse(readFileSync(join(vectors, "predictions.json"), "utf8"));
let world;
let example;

before(async () => {
  world = await startWorld();
  example = await startExample({ server: world.url, port: 0 });
});

after(async () => {
  await example?.close();
  await world?.stop();
});

/** The samples the server holds from one device (the admin samples list). */
async function samplesOf(deviceId) {
  const url = `${world.url}/v1/admin/models/conformance/samples?device_id=${encodeURIComponent(deviceId)}`;
  const answer = await fetch(url, { headers: { Authorization: `Bearer ${world.admin_token}` } });
  assert.equal(answer.status, 200);
  return (await answer.json()).items;
}

async function predict(page, raw) {
  await page.fill("#input", raw.join(", "));
  await page.click("#predict button[type=submit]");
  await page.waitForSelector("dd[data-field=label]");
  const field = (name) => page.textContent(`dd[data-field="${name}"]`);
  return { label: await field("label"), source: await field("answered by") };
}

it("the web example: a web device installs into IndexedDB, predicts, shares a consented sample, forgets it, survives a reload", async () => {
  const executablePath = process.env.POCKETML_CHROMIUM ?? "/usr/bin/chromium";
  assert.ok(existsSync(executablePath), `no Chromium at ${executablePath}: apt-get install -y chromium, or set POCKETML_CHROMIUM`);
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const logs = [];
    page.on("console", (m) => logs.push(m.text()));
    page.on("pageerror", (e) => logs.push(String(e)));
    const url = `${example.url}/?key=${encodeURIComponent(world.device_key)}&model=conformance`;
    await page.goto(url);
    const settled = "#status[data-state]:not([data-state=syncing])";
    await page.waitForSelector(settled, { timeout: 60_000 });
    const state = () => page.getAttribute("#status", "data-state");
    assert.equal(await state(), "updated", `${await page.textContent("#status")}\n${logs.join("\n")}`);
    assert.equal(await page.getAttribute("#status", "data-downloaded"), String(world.models.conformance.package_size));

    // Consent, one prediction, feedback: the flush sends the feedback and the one shared input.
    await page.check("#consent");
    await page.waitForFunction(() => document.getElementById("privacy-status")?.textContent?.startsWith("Thank you"));
    const first = predictions.cases[0];
    const answer = await predict(page, first.raw);
    assert.deepEqual(answer, { label: first.label, source: "local (v1)" });
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, "web-example-phone.png"), fullPage: true });

    await page.click("#right");
    await page.waitForSelector("#right:disabled");
    await page.waitForSelector("#answer[data-flushed]");
    assert.equal(await page.textContent("#error"), "", "feedback flush failed");
    assert.equal(await page.textContent("#privacy-status"), "1 shared input sent.");
    const deviceId = await page.textContent("#device-id");
    assert.deepEqual(
      (await samplesOf(deviceId)).map((s) => s.predicted),
      [first.label],
    );
    // Forget me: gone on the server too.
    await page.click("#forget");
    await page.waitForSelector("#privacy-status[data-state]");
    assert.equal(await page.getAttribute("#privacy-status", "data-state"), "done");
    assert.deepEqual(await samplesOf(deviceId), []);

    // Reload: the model comes from IndexedDB; the check-in answers 304 and nothing is downloaded.
    await page.reload();
    await page.waitForSelector(settled, { timeout: 60_000 });
    assert.ok(["unchanged", "current"].includes(await state()), await page.textContent("#status"));
    assert.equal(await page.getAttribute("#status", "data-downloaded"), "0");
    const again = await predict(page, predictions.cases.at(-1).raw);
    assert.deepEqual(again, { label: predictions.cases.at(-1).label, source: "local (v1)" });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: join(shots, "web-example-desktop.png"), fullPage: true });
    assert.deepEqual(
      logs.filter((l) => /error/i.test(l)),
      [],
    );
  } finally {
    await browser.close();
  }
});
