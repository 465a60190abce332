/**
 * What a user's privacy choices guarantee across the device's own machinery (review findings):
 * forgetMe empties the queue in place (the day's DP spend and open sketch windows stay, a flush
 * under way stops), flushes never interleave, samples survive a server that does not know
 * /v1/samples, predictions answered by the cloud reach consented capture, and the default
 * random source is the platform's CSPRNG.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SampleCapture } from "../src/core/capture.js";
import { secureRandom } from "../src/core/device.js";
import { Device, MemoryStorage, type Runtime } from "../src/core/index.js";
import { type SendOutcome, type TelemetryEvent, TelemetryQueue } from "../src/core/queue.js";

const event = (i: number): TelemetryEvent => ({ type: "inference", ts: i, model: "m" });

/** A send that waits until the test lets it answer. */
function gate() {
  const calls: string[] = [];
  let open: (outcome: SendOutcome) => void = () => undefined;
  const send = async (what: string): Promise<SendOutcome> => {
    calls.push(what);
    return new Promise((resolve) => {
      open = resolve;
    });
  };
  return { calls, send, answer: (outcome: SendOutcome) => open(outcome) };
}

describe("forgetMe and the telemetry queue", () => {
  it("clearing keeps the day's spent epsilon, the open windows and the batch counter", async () => {
    const storage = new MemoryStorage();
    const queue = new TelemetryQueue(storage);
    queue.windowSource = () => [{ model: "m", version: 1 }];
    assert.equal(queue.spendPrivacy(100, 0.6, 1), true);
    queue.record(event(1));
    queue.addFeedback({ prediction_id: "p", model: "m", label: "secret" });
    assert.deepEqual(queue.clear(), { events: 1, feedback: 1 });
    await queue.save();
    assert.equal(queue.spendPrivacy(100, 0.6, 1), false, "the same day may not spend its budget twice");
    const reloaded = new TelemetryQueue(storage);
    await reloaded.load();
    assert.deepEqual([reloaded.pending, reloaded.windows], [0, [{ model: "m", version: 1 }]]);
    const saved = JSON.parse(new TextDecoder().decode((await storage.read("telemetry.json")) as Uint8Array));
    assert.deepEqual(saved.feedback, []);
  });

  it("a flush under way when the queue is cleared sends nothing more and loses nothing queued after", async () => {
    const storage = new MemoryStorage();
    const queue = new TelemetryQueue(storage);
    for (let i = 0; i < 700; i++) queue.record(event(i));
    queue.addFeedback({ prediction_id: "p1", model: "m", label: "private-label" });
    const batches: string[] = [];
    const feedback = gate();
    const flushing = queue.flush(
      "d",
      async (id) => {
        batches.push(id);
        return "stored";
      },
      (body) => feedback.send(String(body.label)),
    );
    while (feedback.calls.length === 0) await new Promise((resolve) => setImmediate(resolve));
    queue.clear(); // forgetMe while the feedback is on the wire
    await queue.save();
    queue.addFeedback({ prediction_id: "p2", model: "m", label: "after" }); // a new label, after the forget
    feedback.answer("stored");
    const report = await flushing;
    await queue.save(); // what the next save writes (forgetMe saves the cleared queue at once)
    const saved = JSON.parse(new TextDecoder().decode((await storage.read("telemetry.json")) as Uint8Array));
    // The old flush must not take the new label for the one it sent (it would be lost).
    assert.deepEqual([batches.length, report.feedbackSent, saved.feedback.map((f: { label: string }) => f.label)], [2, 0, ["after"]]);
  });

  it("two flushes at once run one after the other: no batch is cleared by the other", async () => {
    const queue = new TelemetryQueue(new MemoryStorage());
    for (let i = 0; i < 600; i++) queue.record(event(i));
    const first = gate();
    const sent: string[] = [];
    const a = queue.flush(
      "d",
      (id) => first.send(id),
      async () => "stored",
    );
    const b = queue.flush(
      "d",
      async (id, events) => {
        sent.push(`${id}:${events.length}`);
        return "stored";
      },
      async () => "stored",
    );
    while (first.calls.length === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(sent, [], "the second flush waits for the first");
    first.answer("retry"); // the first stops with its batch in flight: the second sends it again, same id
    await Promise.all([a, b]);
    assert.deepEqual(sent, ["b-d-000001:500", "b-d-000002:100"]);
    assert.equal(queue.pending, 0);
  });
});

describe("consented samples and the server", () => {
  const facts = { platform: "linux" as const, os_version: "6.1", app_version: "1.0.0", device_id: "privacy-device-01" };
  const runtime: Runtime = { formats: ["onnx"], load: async () => assert.fail("no model is loaded here") };
  const policy = { enabled: true, when: "all", rate: 1, wifi_only: false } as const;

  it("a server without /v1/samples (404) keeps the samples for later; a 422 drops them", async () => {
    const statuses = [404, 422];
    const calls: string[] = [];
    const capture = new SampleCapture();
    const device = await Device.open({
      serverUrl: "http://127.0.0.1:9",
      deviceKey: "k",
      facts,
      storage: new MemoryStorage(),
      runtime,
      capture,
      fetch: async (url, init) => {
        const path = new URL(String(url)).pathname;
        calls.push(path);
        const status = path === "/v1/samples" ? (statuses.shift() ?? 200) : 202;
        return new Response(JSON.stringify({ accepted: 1, duplicates: 0 }), { status });
      },
    });
    await device.setConsent(true);
    const parsed = (await import("../src/core/capture.js")).parseCapturePolicy(policy);
    capture.tap("m", parsed)?.offer(Float32Array.of(1, 2), [1, 2], "p1", "yes", 0.9, 1);
    const kept = await device.flush();
    const dropped = await device.flush();
    assert.deepEqual([kept.samples?.pending, dropped.samples?.pending, calls.filter((c) => c === "/v1/samples").length], [1, 0, 2]);
  });
});

it("a prediction the cloud answers (no local model) reaches consented capture, with the cloud's version", async () => {
  const facts = { platform: "linux" as const, os_version: "6.1", app_version: "1.0.0", device_id: "privacy-device-02" };
  const runtime: Runtime = { formats: ["onnx"], load: async () => assert.fail("no model is loaded here") };
  const entry = {
    name: "m",
    hybrid: { mode: "cloud", threshold: 0.5, cloud_route: "/v1/models/m/predict", cloud_variant: null, timeout_ms: 1000, max_retries: 0 },
    download_policy: { wifi_only: false, charging_only: false, max_cellular_bytes: 0 },
    capture: { enabled: true, when: "all", rate: 1, wifi_only: false },
  };
  const capture = new SampleCapture();
  const device = await Device.open({
    serverUrl: "http://127.0.0.1:9",
    deviceKey: "k",
    facts,
    storage: new MemoryStorage(),
    runtime,
    capture,
    fetch: async (url) => {
      const path = new URL(String(url)).pathname;
      if (path === "/v1/checkin") return new Response(JSON.stringify({ app_id: "a", keyring: null, keyring_chain: [], models: [entry] }));
      return new Response(JSON.stringify({ version: 7, predictions: [{ index: 1, label: "yes", probabilities: [0.2, 0.8] }] }));
    },
  });
  assert.equal((await device.sync()).models.m?.status, "cloud-only");
  await device.setConsent(true);
  const p = await device.model("m").predict([1, 2]);
  assert.deepEqual([p.source, capture.samples.map((x) => [x.prediction_id, x.version])], ["cloud", [[p.predictionId, 7]]]);
});

it("the default random source is the platform's CSPRNG: uniform in [0, 1), not Math.random", () => {
  const random = secureRandom();
  const original = Math.random;
  Math.random = () => 0.5; // would show if it were used
  try {
    const draws = Array.from({ length: 4000 }, random);
    assert.ok(draws.every((d) => d >= 0 && d < 1));
    assert.ok(draws.some((d) => d !== 0.5));
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    assert.ok(Math.abs(mean - 0.5) < 0.03, `mean ${mean}`);
  } finally {
    Math.random = original;
  }
});
