/**
 * Consented capture: the vectors of conformance/capture.json (computed by the Python reference),
 * then what the vectors cannot show: persistence across a restart, a full disk, the redactor,
 * the sampling draw, Wi-Fi, retention, and `forgetMe` through a Device.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CAPTURE_FIELDS,
  type CapturePolicy,
  encodeValues,
  parseCapturePolicy,
  SampleCapture,
  type SampleSend,
} from "../src/core/capture.js";
import { parseEntry } from "../src/core/entry.js";
import { Device, MemoryStorage, type PocketMLError, type Runtime } from "../src/core/index.js";
import { vectorJson } from "./vectors.js";

interface Vectors {
  fields: { name: string; type: string; minimum: number | null; maximum: number | null; default: unknown }[];
  limits: { max_samples_per_batch: number; max_sample_batch_bytes: number };
  policies: { name: string; raw: unknown; expect: Record<string, unknown> }[];
  samples: { name: string; input: SampleInput; body: { batch_id: string; samples: { sample_id: string }[] } }[];
  modes: { name: string; policy: CapturePolicy; steps: Step[]; expect: ModeOutcome }[];
}
interface SampleInput {
  model: string;
  version: number;
  prediction_id: string;
  device_id: string;
  device_class: string;
  shape: number[];
  values: number[];
  predicted: string;
  confidence: number;
  label: string | null;
  captured_at: number;
  sample_id: string;
  batch_id: string;
}
type Step =
  | { predict: { prediction_id: string; predicted: string; confidence: number } }
  | { feedback: { prediction_id: string; label: string | null } }
  | { consent: boolean };
interface ModeOutcome {
  sent: { prediction_id: string; label: string | null }[];
  pending: number;
  counters: { dropped_budget: number; evicted: number };
}

const vectors = vectorJson<Vectors>("capture.json");
const POLICY = parseCapturePolicy({ enabled: true, when: "all", wifi_only: false });

/** A recording sender: answers like the server (all accepted) unless told otherwise. */
function sender(outcomes: SampleSend["outcome"][] = []) {
  const bodies: { batch_id: string; samples: Record<string, unknown>[] }[] = [];
  const send = async (body: unknown): Promise<SampleSend> => {
    const b = body as (typeof bodies)[number];
    bodies.push(b);
    const outcome = outcomes.shift() ?? "stored";
    return { outcome, answer: outcome === "stored" ? { accepted: b.samples.length, duplicates: 0 } : "HTTP 503" };
  };
  return { bodies, send };
}

/** The `input.data` of every sample sent. */
const sentData = (bodies: ReturnType<typeof sender>["bodies"]) =>
  bodies.flatMap((b) => b.samples.map((s) => (s.input as { data: string }).data));

/** A seeded generator (deterministic ids and draws). */
function seeded(seed = 1): () => number {
  let n = seed;
  return () => {
    n = (n * 48_271) % 2_147_483_647;
    return n / 2_147_483_647;
  };
}

async function opened(storage = new MemoryStorage(), wall = () => 1_795_240_000, random = seeded()): Promise<SampleCapture> {
  const capture = new SampleCapture(wall);
  await capture.attach(storage, random);
  return capture;
}

const X = Float32Array.of(0.25, -0.5);

describe("capture.json vectors", () => {
  it("the policy field table is the Python declaration, and so are the batch limits", async () => {
    const { MAX_SAMPLES_PER_BATCH, MAX_SAMPLE_BATCH_BYTES } = await import("../src/core/capture.js");
    assert.deepEqual(
      CAPTURE_FIELDS.map(([name, type, minimum, maximum, def]) => ({ name, type, minimum, maximum, default: def })),
      vectors.fields.map(({ name, type, minimum, maximum, default: def }) => ({ name, type, minimum, maximum, default: def })),
    );
    assert.deepEqual(
      [MAX_SAMPLES_PER_BATCH, MAX_SAMPLE_BATCH_BYTES],
      [vectors.limits.max_samples_per_batch, vectors.limits.max_sample_batch_bytes],
    );
  });

  for (const v of vectors.policies) {
    it(`policy: ${v.name}`, () => {
      let outcome: Record<string, unknown>;
      try {
        outcome = { ok: true, policy: parseCapturePolicy(v.raw) };
      } catch (err) {
        const e = err as PocketMLError;
        outcome = { ok: false, error: e.code, field: e.message.split(" ")[0] };
      }
      assert.deepEqual(outcome, v.expect);
    });
  }

  for (const v of vectors.samples) {
    it(`sample wire: ${v.name}`, async () => {
      const i = v.input;
      const capture = await opened(new MemoryStorage(), () => i.captured_at);
      await capture.setConsent(true);
      const tap = capture.tap(i.model, POLICY);
      tap?.offer(Float32Array.from(i.values), i.shape, i.prediction_id, i.predicted, i.confidence, i.version);
      if (i.label !== null) capture.onFeedback(i.prediction_id, i.label);
      const { bodies, send } = sender();
      await capture.flush(i.device_id, i.device_class, true, send);
      assert.equal(bodies.length, 1);
      const body = bodies[0] as (typeof bodies)[number];
      assert.match(body.batch_id, /^[0-9a-f]{32}$/);
      assert.match(String(body.samples[0]?.sample_id), /^[0-9a-f]{32}$/);
      const pinned = { ...body, batch_id: i.batch_id, samples: body.samples.map((s) => ({ ...s, sample_id: i.sample_id })) };
      assert.deepEqual(pinned, v.body);
    });
  }

  for (const v of vectors.modes) {
    it(`mode: ${v.name}`, async () => {
      let now = 1_795_240_000;
      const capture = await opened(new MemoryStorage(), () => now);
      await capture.setConsent(true);
      const tap = capture.tap("conformance", v.policy);
      for (const step of v.steps) {
        now += 1;
        if ("predict" in step) {
          const p = step.predict;
          tap?.offer(X, [1, 2], p.prediction_id, p.predicted, p.confidence, 1);
        } else if ("feedback" in step) capture.onFeedback(step.feedback.prediction_id, step.feedback.label);
        else await capture.setConsent(step.consent);
      }
      const { bodies, send } = sender();
      const report = await capture.flush("conformance-capture-01", "unknown", true, send);
      const sent = bodies.flatMap((b) => b.samples.map((s) => ({ prediction_id: s.prediction_id, label: s.label })));
      const counters = { dropped_budget: capture.counters.dropped_budget ?? 0, evicted: capture.counters.evicted ?? 0 };
      assert.deepEqual({ sent, pending: report.pending, counters }, v.expect);
    });
  }
});

describe("SampleCapture", () => {
  it("consent is off by default and persists across a restart", async () => {
    const storage = new MemoryStorage();
    const first = await opened(storage);
    const defaultConsent = first.consent;
    await first.setConsent(true);
    const again = await opened(storage);
    assert.deepEqual([defaultConsent, again.consent], [false, true]);
  });

  it("stored samples survive a restart, and a batch whose answer was lost is re-sent with the same ids", async () => {
    const storage = new MemoryStorage();
    const before = await opened(storage);
    await before.setConsent(true);
    before.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    before.tap("m", POLICY)?.offer(X, [1, 2], "p2", "yes", 0.9, 1);
    const lost = sender(["retry"]);
    const failed = await before.flush("device-0001", "unknown", true, lost.send);
    const after = await opened(storage); // the app was killed and started again
    const delivered = sender();
    const report = await after.flush("device-0001", "unknown", true, delivered.send);
    const ids = (b: (typeof lost.bodies)[number] | undefined) => [b?.batch_id, b?.samples.map((s) => s.sample_id)];
    assert.deepEqual([failed.pending, failed.error !== null, report.sent, report.pending], [2, true, 2, 0]);
    assert.deepEqual(ids(delivered.bodies[0]), ids(lost.bodies[0]));
    assert.equal((await opened(storage)).samples.length, 0);
  });

  it("a line torn by a kill mid-append loses only that sample, not the one appended after it", async () => {
    const storage = new MemoryStorage();
    const capture = await opened(storage);
    await capture.setConsent(true);
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    await storage.append("capture/samples.log", new TextEncoder().encode('{"sample_id":"ab'));
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p2", "yes", 0.9, 1);
    await capture.settled(); // the app is killed now: no flush rewrote the log
    const read = async () => (await opened(storage)).samples.map((s) => s.prediction_id);
    assert.deepEqual(await read(), ["p1", "p2"]);
  });

  it("a sample kept while the log is being rewritten is read back once", async () => {
    const storage = new MemoryStorage();
    const capture = await opened(storage);
    await capture.setConsent(true);
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    capture.onFeedback("p1", "no"); // a late label rewrites the log...
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p2", "yes", 0.9, 1); // ...which then holds p2 before p2's append
    await capture.settled();
    const read = async () => (await opened(storage)).samples.map((s) => s.prediction_id);
    assert.deepEqual(await read(), ["p1", "p2"]);
  });

  it("a full disk never fails a prediction: the sample is dropped and counted", async () => {
    const storage = new MemoryStorage();
    storage.append = async () => {
      throw new Error("ENOSPC");
    };
    const capture = await opened(storage);
    await capture.setConsent(true);
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    const report = await capture.flush("device-0001", "unknown", true, sender().send);
    assert.deepEqual([report.sent, capture.counters.dropped_disk], [0, 1]);
  });

  it("the redactor gets a copy: its replacement is sent, null or a throw or a new length drops the sample", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    const seen: Float32Array[] = [];
    const hooks = [
      (_m: string, x: Float32Array) => {
        seen.push(x);
        x.fill(0);
        return x;
      },
      () => null,
      () => {
        throw new Error("boom");
      },
      () => Float32Array.of(1),
    ];
    const input = Float32Array.of(3, 4);
    for (const [i, hook] of hooks.entries()) {
      capture.redact = hook;
      capture.tap("m", POLICY)?.offer(input, [1, 2], `p${i}`, "yes", 0.9, 1);
    }
    const { bodies, send } = sender();
    await capture.flush("device-0001", "unknown", true, send);
    assert.deepEqual(Array.from(input), [3, 4]);
    assert.notEqual(seen[0], input);
    assert.deepEqual(
      bodies[0]?.samples.map((s) => [s.prediction_id, (s.input as { data: string }).data]),
      [["p0", "AAAAAAAAAAA="]],
    );
    assert.equal(capture.counters.dropped_redacted, 3);
  });

  it("encodeValues is base64 of the little-endian float32 bytes, for every tail length and a view at an offset", () => {
    const random = seeded(7);
    const backing = Float32Array.from({ length: 40_000 }, () => (random() - 0.5) * 1e6);
    const cases = [0, 1, 2, 3, 4, 5, 6, 7, 30_000].map((length) => backing.subarray(3, 3 + length));
    const base64 = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64");
    assert.deepEqual(cases.map(encodeValues), cases.map(base64));
  });

  it("feedback mode holds the redacted tensor and encodes it only when its label stores it", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    let handed: Float32Array = new Float32Array(0);
    capture.redact = (_m, x) => {
      handed = x; // the copy the hook redacts in place, and the one the hold keeps
      return x;
    };
    capture.tap("m", { ...POLICY, when: "feedback" })?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    handed.fill(7); // not yet encoded: the upload shows it (encoding at offer would have sent X)
    capture.onFeedback("p1", "no");
    const { bodies, send } = sender();
    await capture.flush("device-0001", "unknown", true, send);
    assert.deepEqual(sentData(bodies), [encodeValues(Float32Array.of(7, 7))]);
  });

  it("a kept sample is encoded after offer returns, when its append runs, and the log holds it", async () => {
    const storage = new MemoryStorage();
    const capture = await opened(storage);
    await capture.setConsent(true);
    let handed: Float32Array = new Float32Array(0);
    capture.redact = (_m, x) => {
      handed = x;
      return x;
    };
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    handed.fill(7); // offer has returned: the predict path did no encoding
    await capture.settled();
    const stored = (await opened(storage)).samples.map((s) => s.input.data);
    assert.deepEqual(stored, [encodeValues(Float32Array.of(7, 7))]);
  });

  it("a redactor's own (maybe reused) output array is copied before it is held", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    const scratch = new Float32Array(2);
    capture.redact = () => scratch.fill(1);
    const tap = capture.tap("m", { ...POLICY, when: "feedback" });
    tap?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    scratch.fill(2); // the app's next use of its buffer
    capture.onFeedback("p1", "no");
    const { bodies, send } = sender();
    await capture.flush("device-0001", "unknown", true, send);
    assert.deepEqual(sentData(bodies), [encodeValues(Float32Array.of(1, 1))]);
  });

  it("consent off and on again, then a restart the same UTC day, keeps the day's byte budget and the counters", async () => {
    const storage = new MemoryStorage();
    const policy = { ...POLICY, max_bytes_per_day: 3000 };
    const x = new Float32Array(250); // 1000 bytes: three fill the day's budget
    const first = await opened(storage);
    await first.setConsent(true);
    for (const pid of ["p1", "p2", "p3", "p4"]) first.tap("m", policy)?.offer(x, [1, 250], pid, "yes", 0.9, 1);
    await first.setConsent(false);
    await first.setConsent(true);
    const again = await opened(storage); // the app restarts, the same day
    again.tap("m", policy)?.offer(x, [1, 250], "p5", "yes", 0.9, 1);
    assert.deepEqual([first.samples.length, again.samples.length, again.counters.dropped_budget], [0, 0, 2]);
  });

  const meanwhile: [string, (capture: SampleCapture) => void, string | null][] = [
    ["setConsent(false)", (capture) => void capture.setConsent(false), "no consent"],
    [
      "a forgetMe",
      (capture) => {
        capture.forgetOwed = true; // as Device.forgetMe: owed first, then deleted here
        void capture.forget();
      },
      "forget pending",
    ],
    ["a deletion (consent off and on again)", (capture) => void capture.forget(), null],
  ];
  for (const [change, act, skipped] of meanwhile) {
    it(`${change} while flush writes a batch's id: the claimed batch is not sent`, async () => {
      const storage = new MemoryStorage();
      const capture = await opened(storage);
      await capture.setConsent(true);
      capture.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
      await capture.settled();
      const write = storage.write.bind(storage);
      let armed = true;
      storage.write = async (path, data) => {
        if (armed && path === "capture/samples.log") {
          armed = false; // the claim's write: the user acts while it is on its way to storage
          act(capture);
        }
        await write(path, data);
      };
      const { bodies, send } = sender();
      const report = await capture.flush("device-0001", "unknown", true, send);
      assert.deepEqual([bodies.length, report.skipped, report.pending], [0, skipped, 0]);
    });
  }

  it("a label for a held sample stores nothing while a forgetMe is owed", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    capture.tap("m", { ...POLICY, when: "feedback" })?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    capture.forgetOwed = true; // Device.forgetMe sets it before it deletes the hold
    capture.onFeedback("p1", "no");
    assert.deepEqual([capture.samples.length, capture.held], [0, 0]);
  });

  it("off Wi-Fi, a claimed batch that may go is retried though a claimed wifi_only batch is older", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    capture.tap("m", { ...POLICY, wifi_only: true })?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    const wifi = sender(["retry"]);
    await capture.flush("device-0001", "unknown", true, wifi.send); // claims p1, then fails
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p2", "yes", 0.9, 1);
    const cellular = sender(["retry"]);
    await capture.flush("device-0001", "unknown", false, cellular.send); // claims p2, then fails
    const retry = sender();
    const report = await capture.flush("device-0001", "unknown", false, retry.send);
    const sent = (s: ReturnType<typeof sender>) => s.bodies.map((b) => [b.batch_id, b.samples.map((x) => x.prediction_id)]);
    assert.deepEqual(sent(retry), sent(cellular));
    assert.deepEqual([sent(cellular)[0]?.[1], report.sent, report.pending], [["p2"], 1, 1]);
  });

  it("below rate 1 a prediction is kept when the draw is under the rate", async () => {
    let draw = 0.9;
    const capture = await opened(new MemoryStorage(), undefined, () => draw);
    await capture.setConsent(true);
    const tap = capture.tap("m", { ...POLICY, rate: 0.5 });
    tap?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    draw = 0.1;
    tap?.offer(X, [1, 2], "p2", "yes", 0.9, 1);
    assert.deepEqual(
      capture.samples.map((s) => s.prediction_id),
      ["p2"],
    );
  });

  it("wifi_only samples wait until the device is on Wi-Fi", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    capture.tap("m", { ...POLICY, wifi_only: true })?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    const cellular = await capture.flush("device-0001", "unknown", false, sender().send);
    const wifi = await capture.flush("device-0001", "unknown", true, sender().send);
    assert.deepEqual([cellular.skipped, cellular.pending, wifi.sent, wifi.pending], ["not on wifi", 1, 1, 0]);
  });

  it("unsent samples older than retention_days are deleted at flush", async () => {
    let now = 1_795_240_000;
    const capture = await opened(new MemoryStorage(), () => now);
    await capture.setConsent(true);
    capture.tap("m", { ...POLICY, retention_days: 2 })?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    now += 2 * 86_400 + 1;
    const report = await capture.flush("device-0001", "unknown", true, sender().send);
    assert.deepEqual([report.expired, report.sent, report.pending], [1, 0, 0]);
  });

  it("samples past retention_days are deleted when the capture is opened, from memory and the log", async () => {
    const storage = new MemoryStorage();
    let now = 1_795_240_000;
    const before = await opened(storage, () => now);
    await before.setConsent(true);
    before.tap("m", { ...POLICY, retention_days: 2 })?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    before.tap("m", { ...POLICY, retention_days: 30 })?.offer(X, [1, 2], "p2", "yes", 0.9, 1);
    await before.settled();
    now += 2 * 86_400 + 1; // the app was not used for two days
    const after = await opened(storage, () => now);
    const opening = after.samples.map((s) => s.prediction_id);
    await after.settled();
    const onDisk = (await opened(storage)).samples.map((s) => s.prediction_id); // read with the old clock
    const report = await after.flush("device-0001", "unknown", true, sender(["retry"]).send);
    assert.deepEqual([opening, report.expired, after.counters.expired, onDisk], [["p2"], 1, 1, ["p2"]]);
  });

  it("drifted: only inputs the profile's bin test marks are captured", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    const tap = capture.tap("m", { ...POLICY, when: "drifted" }, (raw) => (raw[0] as number) > 1);
    tap?.offer(X, [1, 2], "p1", "yes", 0.9, 1, [0.5, 0]);
    tap?.offer(X, [1, 2], "p2", "yes", 0.9, 1, [2, 0]);
    tap?.offer(X, [1, 2], "p3", "yes", 0.9, 1); // no raw input (the cloud answered): not drifted
    assert.deepEqual(
      capture.samples.map((s) => s.prediction_id),
      ["p2"],
    );
  });

  it("drifted without a reference profile's bin test captures nothing, and says so once", async () => {
    const capture = await opened();
    await capture.setConsent(true);
    const warn = console.warn;
    const warnings: unknown[] = [];
    console.warn = (message: unknown) => warnings.push(message);
    try {
      for (const pid of ["p1", "p2"]) capture.tap("m", { ...POLICY, when: "drifted" })?.offer(X, [1, 2], pid, "yes", 0.9, 1);
    } finally {
      console.warn = warn;
    }
    assert.deepEqual([capture.samples.length, warnings.length], [0, 1]);
  });
});

describe("capture through a Device", () => {
  const facts = { platform: "linux" as const, os_version: "6.1", app_version: "1.0.0", device_id: "capture-device-01" };
  const runtime: Runtime = { formats: ["onnx"], load: async () => assert.fail("no model is loaded here") };

  function fakeServer(answers: number[]) {
    const calls: string[] = [];
    const fetch = async (url: string | URL | Request, init?: RequestInit) => {
      calls.push(`${init?.method} ${new URL(String(url)).pathname}`);
      const status = answers.shift() ?? 200;
      return new Response(JSON.stringify({ accepted: 1, duplicates: 0, samples: 1 }), { status });
    };
    return { calls, fetch };
  }

  it("consenting without the capture module is an invalid_input naming the fix", async () => {
    const device = await Device.open({ serverUrl: "http://127.0.0.1:9", deviceKey: "k", facts, storage: new MemoryStorage(), runtime });
    await assert.rejects(
      device.setConsent(true),
      (err: PocketMLError) => err.code === "invalid_input" && err.message.includes("SampleCapture"),
    );
  });

  it("forgetMe offline: deleted here, owed to the server, nothing captured until the retry at flush succeeds", async () => {
    const storage = new MemoryStorage();
    const server = fakeServer([503]);
    const capture = new SampleCapture();
    const device = await Device.open({
      serverUrl: "http://127.0.0.1:9",
      deviceKey: "k",
      facts,
      storage,
      runtime,
      fetch: server.fetch,
      capture,
    });
    await device.setConsent(true);
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p1", "yes", 0.9, 1);
    const report = await device.forgetMe();
    capture.tap("m", POLICY)?.offer(X, [1, 2], "p2", "yes", 0.9, 1);
    const reopened = await Device.open({
      serverUrl: "http://127.0.0.1:9",
      deviceKey: "k",
      facts,
      storage,
      runtime,
      fetch: server.fetch,
      capture: new SampleCapture(),
    });
    const flushed = await reopened.flush();
    assert.deepEqual([report.samples, report.queued, capture.samples.length], [1, true, 0]);
    assert.deepEqual(server.calls, ["DELETE /v1/device/data", "DELETE /v1/device/data"]);
    assert.deepEqual([flushed.samples?.pending, flushed.samples?.skipped], [0, null]);
  });

  it("a check-in entry with a bad capture object is refused as a protocol_error naming the field", () => {
    const entry = {
      name: "m",
      hybrid: { mode: "cloud", threshold: 0.5, cloud_route: "/v1/models/m/predict", timeout_ms: 10, max_retries: 0 },
    };
    const download_policy = { wifi_only: false, charging_only: false, max_cellular_bytes: 0 };
    const ok = parseEntry({ ...entry, download_policy }, 0);
    assert.throws(
      () => parseEntry({ ...entry, download_policy, capture: { rate: 2 } }, 0),
      (err: PocketMLError) => err.code === "protocol_error" && err.message.includes("models[0].capture.rate"),
    );
    assert.equal(ok.capture, null);
  });
});
