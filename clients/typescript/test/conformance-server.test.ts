/**
 * The server cases of conformance/server.json, against a real pocketml server started by
 * conformance/serve.py, with the Node adapters (files in a temporary folder, onnxruntime-node).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SampleCapture } from "../src/core/capture.js";
import { sha256Hex } from "../src/core/crypto.js";
import { Device, type DownloadEvent } from "../src/core/index.js";
import { Sketcher } from "../src/core/sketch.js";
import { FileStorage, OnnxNodeRuntime } from "../src/node/index.js";
import { type Database, startWorld, type World } from "./server.js";
import { vectorJson } from "./vectors.js";

interface Scenario {
  models: { name: string; encrypt: boolean; model_sha256: string; policy?: { hybrid: { mode: string; threshold: number } } }[];
  device: { platform: "linux"; os_version: string; app_version: string; device_id: string };
}
interface Predictions {
  tolerance: number;
  cases: { raw: number[]; probabilities: number[]; index: number; label: string; confidence: number }[];
}

/** conformance-server-postgresql.test.ts runs this file again on PostgreSQL. */
const DATABASE: Database = process.env.POCKETML_TS_DATABASE === "postgresql" ? "postgresql" : "sqlite";
const scenario = vectorJson<Scenario>("server.json");
const predictions = vectorJson<Predictions>("predictions.json");
const runtime = new OnnxNodeRuntime();
let world: World;
let tmp: string;

async function openDevice(folder: string, onDownload?: (e: DownloadEvent) => void): Promise<Device> {
  const { platform, os_version, app_version, device_id } = scenario.device;
  return Device.open({
    serverUrl: world.url,
    deviceKey: world.device_key,
    facts: { platform, os_version, app_version, device_id },
    storage: new FileStorage(join(tmp, folder)),
    runtime,
    onDownload,
  });
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "pocketml-ts-"));
  world = await startWorld(DATABASE);
});

after(async () => {
  await world?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe(`server cases (${DATABASE})`, () => {
  it("checkin-etag: 200 with the body's sha256 as ETag, then 304 without a body", async () => {
    const body = JSON.stringify({ ...scenario.device, formats: ["onnx"], models: {} });
    const headers = { Authorization: `Bearer ${world.device_key}`, "Content-Type": "application/json" };
    const first = await fetch(`${world.url}/v1/checkin`, { method: "POST", headers, body });
    const bytes = new Uint8Array(await first.arrayBuffer());
    const etag = first.headers.get("etag") as string;
    const again = await fetch(`${world.url}/v1/checkin`, { method: "POST", headers: { ...headers, "If-None-Match": etag }, body });
    assert.equal(first.status, 200);
    assert.equal(etag, `"${sha256Hex(bytes)}"`);
    assert.equal(again.status, 304);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
  });

  it("install, then not-modified: every model verified and active, a second sync downloads nothing", async () => {
    const events: DownloadEvent[] = [];
    const device = await openDevice("install", (e) => events.push(e));
    const first = await device.sync();
    const second = await device.sync();
    for (const model of scenario.models) {
      const synced = first.models[model.name];
      assert.equal(synced?.status, "updated", synced?.error?.message);
      assert.equal(synced?.bytesDownloaded, world.models[model.name]?.package_size);
    }
    assert.equal(second.notModified, true);
    assert.deepEqual(
      Object.values(second.models).map((m) => [m.status, m.bytesDownloaded]),
      scenario.models.map(() => ["unchanged", 0]),
    );
    const kinds = events.filter((e) => e.model === scenario.models[0]?.name).map((e) => e.kind);
    assert.equal(kinds[0], "started");
    assert.equal(kinds.at(-1), "done");
    assert.ok(kinds.includes("progress"));
  });

  it("resume: a partial file holding the first half is completed by one Range request", async () => {
    const name = scenario.models[0]?.name as string;
    const ref = world.models[name] as World["models"][string];
    const whole = new Uint8Array(await (await fetch(world.url + ref.package_url)).arrayBuffer());
    const half = Math.floor(whole.length / 2);
    const tail = await fetch(world.url + ref.package_url, { headers: { Range: `bytes=${half}-` } });
    assert.equal(tail.status, 206);
    assert.equal(tail.headers.get("content-range"), `bytes ${half}-${whole.length - 1}/${whole.length}`);
    await new FileStorage(join(tmp, "resume")).append(`partial/${ref.package_id}.part`, whole.subarray(0, half));
    const device = await openDevice("resume");
    const report = await device.sync();
    assert.equal(report.models[name]?.status, "updated", report.models[name]?.error?.message);
    assert.deepEqual([report.models[name]?.bytesDownloaded, report.models[name]?.resumed], [whole.length - half, true]);
  });

  it("predict-local, predict-cascade, feedback and telemetry: the vectors through every model, then one flush", async () => {
    const device = await openDevice("predict");
    assert.ok((await device.sync()).isOk);
    const sources: string[] = [];
    let last = "";
    for (const model of scenario.models) {
      const cascade = model.policy?.hybrid;
      for (const c of predictions.cases) {
        const p = await device.model(model.name).predict(c.raw);
        sources.push(p.source);
        const expected = cascade?.mode === "cascade" && c.confidence < cascade.threshold ? "cloud" : "local";
        assert.deepEqual([p.source, p.label, p.index, p.version], [expected, c.label, c.index, 1]);
        for (const [i, want] of c.probabilities.entries())
          assert.ok(Math.abs((p.probabilities[i] as number) - want) <= predictions.tolerance);
        last = p.predictionId;
      }
    }
    device.feedback(last, scenario.models.at(-1)?.name as string, { label: "no" });
    const first = await device.flush();
    const second = await device.flush();
    const expected = scenario.models.length * (predictions.cases.length + 1);
    assert.ok(sources.includes("cloud") && sources.includes("local"), "both paths of the cascade were taken");
    assert.deepEqual([first.sent, first.pending, first.feedbackSent, second.sent], [expected, 0, 1, 0]);
  });

  it("capture: consented samples reach the server with the feedback's label, then forgetMe deletes them there and here", async () => {
    const c = vectorJson<{ cases: CaptureCase[] }>("server.json").cases.find((x) => x.name === "capture") as CaptureCase;
    const { platform, os_version, app_version } = scenario.device;
    const capture = new SampleCapture();
    const device = await Device.open({
      serverUrl: world.url,
      deviceKey: world.device_key,
      facts: { platform, os_version, app_version, device_id: c.device_id },
      storage: new FileStorage(join(tmp, "capture")),
      runtime,
      capture,
    });
    assert.ok((await device.sync()).isOk);
    await device.setConsent(true);
    const predicted: Record<string, string> = {};
    for (const p of predictions.cases) {
      const answer = await device.model(c.model).predict(p.raw);
      predicted[answer.predictionId] = answer.label;
    }
    const labelled = Object.keys(predicted)[c.feedback.case] as string;
    device.feedback(labelled, c.model, { label: c.feedback.label });
    const flushed = await device.flush();
    const stored = await storedSamples(c);
    const forgotten = await device.forgetMe();
    const after = await storedSamples(c);
    assert.equal(flushed.samples?.sent, predictions.cases.length);
    assert.deepEqual(Object.fromEntries(stored.map((s) => [s.prediction_id, s.predicted])), predicted);
    assert.deepEqual(
      Object.fromEntries(stored.map((s) => [s.prediction_id, s.label])),
      Object.fromEntries(Object.keys(predicted).map((pid) => [pid, pid === labelled ? c.feedback.label : null])),
    );
    assert.deepEqual([forgotten.queued, after, capture.samples.length], [false, [], 0]);
  });

  // -- profile sketches: the profile-sketch case (conformance/_sketches.py) ----------------

  it("profile-sketch: one window of every prediction, across an app restart, reaches the server, which counts what Python binned", async () => {
    const sketch = vectorJson<{ sketch: SketchWorld }>("server.json").sketch;
    const wall = Math.floor(Date.now() / 1000); // pinned: every input lands in one window
    const { platform, os_version, app_version, device_id } = scenario.device;
    const open = () =>
      Device.open({
        serverUrl: world.url,
        deviceKey: world.sketch.device_key,
        facts: { platform, os_version, app_version, device_id },
        storage: new FileStorage(join(tmp, "sketch")),
        runtime,
        wallClock: () => wall,
        sketches: new Sketcher(),
      });
    const killed = await open();
    assert.ok((await killed.sync()).isOk);
    const half = Math.floor(predictions.cases.length / 2);
    for (const c of predictions.cases.slice(0, half)) await killed.model(sketch.model.name).predict(c.raw);
    await killed.save(); // the app goes to the background and is killed: the open window is on storage
    const device = await open();
    for (const c of predictions.cases.slice(half)) await device.model(sketch.model.name).predict(c.raw);
    const flushed = await device.flush();
    const answer = await fetch(`${world.url}/v1/admin/models/${sketch.model.name}/drift?group_by=`, {
      headers: { Authorization: `Bearer ${world.sketch.admin_token}` },
    });
    assert.equal(answer.status, 200);
    const fleet = ((await answer.json()) as { fleet: DriftFleet }).fleet;
    const blocks = [...fleet.features, ...fleet.multivariate, fleet.prediction, fleet.confidence];
    // the inferences, one download, and the profile events
    assert.equal(flushed.sent, predictions.cases.length + 1 + sketch.expect.events);
    assert.deepEqual([fleet.events, fleet.n], [sketch.expect.events, sketch.expect.n]);
    assert.deepEqual(Object.fromEntries(blocks.map((b) => [b.name, b.histogram.current])), sketch.expect.counts);
  });
});

interface CaptureCase {
  name: string;
  model: string;
  device_id: string;
  feedback: { case: number; label: string };
}

async function storedSamples(c: CaptureCase): Promise<{ prediction_id: string; predicted: string; label: string | null }[]> {
  const url = `${world.url}/v1/admin/models/${c.model}/samples?device_id=${encodeURIComponent(c.device_id)}`;
  const answer = await fetch(url, { headers: { Authorization: `Bearer ${world.admin_token}` } });
  assert.equal(answer.status, 200);
  return ((await answer.json()) as { items: { prediction_id: string; predicted: string; label: string | null }[] }).items;
}

interface SketchWorld {
  model: { name: string };
  expect: { events: number; n: number; counts: Record<string, number[]> };
}
interface DriftBlock {
  name: string;
  histogram: { current: number[] };
}
interface DriftFleet {
  events: number;
  n: number;
  features: DriftBlock[];
  multivariate: DriftBlock[];
  prediction: DriftBlock;
  confidence: DriftBlock;
}
