/**
 * Local predict overhead of the SDK over a bare onnxruntime-node `InferenceSession.run`, on
 * the conformance model (goal, issue 17: <= 0.1 ms per call). Both run the same session
 * options on the same inputs, interleaved in rounds; the median per-call time of each is
 * reported and the overhead is the difference (normalization, policy, telemetry record).
 * A second SDK device, installed from a real server (conformance/serve.py) whose package
 * carries a reference profile, measures the same with profile sketching and a capture tap
 * (consent on, the policy's rate 0.01) opted in.
 */
import * as ort from "onnxruntime-node";
import { SampleCapture } from "../src/core/capture.js";
import { Device, type Fetch, MemoryStorage } from "../src/core/index.js";
import { Sketcher } from "../src/core/sketch.js";
import { OnnxNodeRuntime } from "../src/node/index.js";
import { checkinBody, conformanceEntry } from "../test/scripted.js";
import { startWorld } from "../test/server.js";
import { vectorFile, vectorJson } from "../test/vectors.js";

const CALLS = 2000;
const ROUNDS = 7;

const vectors = vectorJson<{ vectors: { name: string; file: string; sha256: string; expect: Record<string, string> }[] }>(
  "packages.json",
).vectors;
const valid = vectors.find((v) => v.name === "valid-plain") as (typeof vectors)[number];
const keyring = vectorJson<{ vectors: { name: string; offered: unknown }[] }>("keyrings.json").vectors.find(
  (v) => v.name === "first-use",
)?.offered;
const predictions = vectorJson<{ schema: unknown; cases: { raw: number[]; normalized: number[] }[] }>("predictions.json");
const data = vectorFile(valid.file);

const fetchFn: Fetch = async (url) => {
  const path = new URL(url).pathname;
  if (path === "/v1/checkin") {
    const model = conformanceEntry(valid, data.length, predictions.schema, { hybrid: { threshold: 0.8, timeout_ms: 1000 } });
    return new Response(checkinBody(keyring, [model]));
  }
  return new Response(data as Uint8Array<ArrayBuffer>);
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function main(): Promise<void> {
  const device = await Device.open({
    serverUrl: "http://bench.test",
    deviceKey: "k",
    storage: new MemoryStorage(),
    runtime: new OnnxNodeRuntime(),
    fetch: fetchFn,
    facts: { platform: "linux", os_version: "6", app_version: "1", device_id: "bench-device-01" },
  });
  if (!(await device.sync()).isOk) throw new Error("sync failed");
  const model = device.model("conformance");
  // The same model from a real server, with its reference profile: sketches and capture on.
  const world = await startWorld();
  const scenario = vectorJson<{ sketch: { model: { name: string } } }>("server.json");
  const sketched = scenario.sketch.model.name;
  const policy = await fetch(`${world.url}/v1/admin/models/${sketched}/versions/1/policy`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${world.sketch.admin_token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ capture: { enabled: true, when: "all", rate: 0.01, wifi_only: false } }),
  });
  if (!policy.ok) throw new Error(`capture policy: ${policy.status} ${await policy.text()}`);
  const monitored = await Device.open({
    serverUrl: world.url,
    deviceKey: world.sketch.device_key,
    storage: new MemoryStorage(),
    runtime: new OnnxNodeRuntime(),
    facts: { platform: "linux", os_version: "6", app_version: "1", device_id: "bench-device-02" },
    sketches: new Sketcher(),
    capture: new SampleCapture(),
  });
  if (!(await monitored.sync()).isOk) throw new Error("sync of the monitored device failed");
  await monitored.setConsent(true);
  const session = await ort.InferenceSession.create(vectorFile("model/logreg.onnx"), { executionProviders: ["cpu"], intraOpNumThreads: 1 });
  const raw = predictions.cases.map((c) => c.raw);
  const normalized = predictions.cases.map((c) => Float32Array.from(c.normalized));
  const bare: number[] = [];
  const sdk: number[] = [];
  const full: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let t = performance.now();
    for (let i = 0; i < CALLS; i++) {
      const x = normalized[i % normalized.length] as Float32Array;
      await session.run({ x: new ort.Tensor("float32", x, [1, 2]) });
    }
    bare.push(((performance.now() - t) * 1000) / CALLS);
    t = performance.now();
    for (let i = 0; i < CALLS; i++) await model.predict(raw[i % raw.length] as number[]);
    sdk.push(((performance.now() - t) * 1000) / CALLS);
    t = performance.now();
    for (let i = 0; i < CALLS; i++) await monitored.model(sketched).predict(raw[i % raw.length] as number[]);
    full.push(((performance.now() - t) * 1000) / CALLS);
  }
  await world.stop();
  const b = median(bare);
  const s = median(sdk);
  const f = median(full);
  const sketches = monitored.sketches;
  console.log(`bare InferenceSession.run: ${b.toFixed(1)} us/call; SDK predict (local): ${s.toFixed(1)} us/call`);
  console.log(
    `local predict overhead: ${((s - b) / 1000).toFixed(4)} ms/call (goal <= 0.1 ms); ${CALLS} calls x ${ROUNDS} rounds, medians`,
  );
  console.log(
    `with profile sketches and a capture tap: ${f.toFixed(1)} us/call, overhead ${((f - b) / 1000).toFixed(4)} ms/call ` +
      `(${sketched}: ${sketches?.sent ?? 0} profile events, ${monitored.capture?.samples.length ?? 0} samples kept)`,
  );
}

await main();
