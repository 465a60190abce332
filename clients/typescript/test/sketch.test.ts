/**
 * Profile sketches against conformance/sketches.json (computed by the Python SDK): the codec,
 * the binning of every layout, the window script; then what the vectors cannot pin: a broken
 * profile, local DP (budget, noise), and windows resumed after a restart.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { parseEntry } from "../src/core/entry.js";
import { isKind, MemoryStorage } from "../src/core/index.js";
import { Binner, parseProfile } from "../src/core/profile.js";
import type { TelemetryEvent } from "../src/core/queue.js";
import { TelemetryQueue } from "../src/core/queue.js";
import { encodeSketch, type MonitorPolicy, privatize, Sketcher } from "../src/core/sketch.js";
import { vectorJson } from "./vectors.js";

interface Case {
  raw: number[];
  predicted: number;
  confidence: number;
  indices: number[] | "skipped";
}
interface BinningVector {
  name: string;
  layout: string;
  sample_shape: number[];
  profile: Record<string, unknown>;
  cases: Case[];
}
interface Vectors {
  codec: { counts: number[]; sketch: string }[];
  binning: BinningVector[];
  windows: {
    model: string;
    version: number;
    profile: string;
    policy: MonitorPolicy;
    inputs: Case[];
    steps: { op: "start" | "add" | "flush"; now?: number; ts?: number; case?: number }[];
    events: TelemetryEvent[];
  };
}

const vectors = vectorJson<Vectors>("sketches.json");
// JSON has no NaN or infinity: the vectors spell them "NaN", "Infinity", "-Infinity".
for (const c of [...vectors.binning.flatMap((v) => v.cases), ...vectors.windows.inputs]) c.raw = c.raw.map(Number);
const NC = vectors.binning.find((v) => v.name === "NC") as BinningVector;

/** A small seeded PRNG (mulberry32): tests draw the same numbers every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Harness {
  sketcher: Sketcher;
  events: TelemetryEvent[];
  errors: string[];
  spent: Map<number, number>;
  now: { t: number };
}

function harness(random: () => number = seeded(1)): Harness {
  const events: TelemetryEvent[] = [];
  const errors: string[] = [];
  const spent = new Map<number, number>();
  const now = { t: 0 };
  const spend = (day: number, epsilon: number, budget: number) => {
    const total = (spent.get(day) ?? 0) + epsilon;
    if (total > budget * (1 + 1e-9)) return false;
    spent.set(day, total);
    return true;
  };
  const sketcher = new Sketcher({
    emit: (e) => events.push(e),
    reportError: (model, version, stage, message) => errors.push(`${model} v${version} ${stage}: ${message}`),
    spend,
    random,
    wall: () => now.t,
  });
  return { sketcher, events, errors, spent, now };
}

const POLICY: MonitorPolicy = { enabled: true, window_s: 60, max_rows: 1000, epsilon_per_day: null };

for (const vector of vectors.codec) {
  it(`encodeSketch writes the Python text for ${JSON.stringify(vector.counts).slice(0, 40)}`, () => {
    assert.equal(encodeSketch(vector.counts), vector.sketch);
  });
}

for (const vector of vectors.binning) {
  it(`the binner gives Python's flat indices (or a skip) for every ${vector.name} case`, () => {
    const binner = new Binner(parseProfile(vector.profile), vector.layout, vector.sample_shape);
    for (const c of vector.cases) {
      const found = binner.indices(c.raw, c.predicted, c.confidence);
      assert.deepEqual(found === null ? "skipped" : Array.from(found), c.indices, JSON.stringify(c.raw).slice(0, 60));
    }
  });
}

// The capture policy's `drifted` test bins a feature as the sketch does: a case is drifted for
// exactly the bin the vector's indices give its feature (numeric profiles: features come first).
for (const vector of vectors.binning.filter((v) => v.name !== "NC-categorical")) {
  it(`the drifted test of capture agrees with the binning of every ${vector.name} case`, () => {
    const profile = parseProfile(vector.profile);
    const binner = new Binner(profile, vector.layout, vector.sample_shape);
    let offset = 0;
    for (const [i, bins] of profile.bins.slice(0, 2).entries()) {
      const size = profile.layout.sizes[i] as number;
      for (const c of vector.cases) {
        if (c.indices === "skipped") continue;
        const bin = (c.indices[i] as number) - offset;
        const others = Array.from({ length: size }, (_, b) => b).filter((b) => b !== bin);
        assert.equal(binner.driftTest({ [bins.name]: [bin] })?.(c.raw), true, `${bins.name} bin ${bin}`);
        assert.equal(binner.driftTest({ [bins.name]: others })?.(c.raw), false, `${bins.name} not bin ${bin}`);
      }
      offset += size;
    }
    assert.equal(binner.driftTest({ "not-a-feature": [0] }), null);
  });
}

it("the sketcher replays the window script into exactly the Python events", () => {
  const script = vectors.windows;
  const h = harness();
  const profile = (vectors.binning.find((v) => v.name === script.profile) as BinningVector).profile;
  let tracker = null;
  for (const step of script.steps) {
    if (step.op === "start") {
      h.now.t = step.now as number;
      tracker = h.sketcher.tracker(script.model, script.version, "pkg", profile, "NC", NC.sample_shape, script.policy);
    } else if (step.op === "add") {
      const c = script.inputs[step.case as number] as Case;
      tracker?.add(c.raw, c.predicted, c.confidence, step.ts as number);
    } else {
      h.now.t = step.now as number;
      h.sketcher.closeWindows(true);
    }
  }
  assert.deepEqual(h.events, script.events);
  assert.ok(h.events.length >= 3);
});

it("a broken profile turns sketching off with one error event, once per package", () => {
  const h = harness();
  const broken = { ...NC.profile, blocks: ["x0"] };
  const first = h.sketcher.tracker("m", 2, "pkg", broken, "NC", NC.sample_shape, POLICY);
  const again = h.sketcher.tracker("m", 2, "pkg", broken, "NC", NC.sample_shape, POLICY);
  assert.deepEqual([first, again, h.errors.length], [null, null, 1]);
  assert.match(h.errors[0] as string, /^m v2 load: the profile cannot be used.*blocks/);
});

it("a profile whose features are not the schema's input turns sketching off, never throwing", () => {
  const h = harness();
  const tracker = h.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", [5], POLICY);
  assert.equal(tracker, null);
  assert.match(h.errors[0] as string, /has 5 columns; the profile monitors 3/);
});

it("a class the profile does not know turns the tracker off with one error; the next inputs are ignored", () => {
  const h = harness();
  const tracker = h.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, POLICY);
  const c = NC.cases[0] as Case;
  tracker?.add(c.raw, 7, c.confidence, 1);
  tracker?.add(c.raw, c.predicted, c.confidence, 2);
  assert.deepEqual([tracker?.enabled, h.errors.length, h.sketcher.closeWindows(true)], [false, 1, 0]);
  assert.match(h.errors[0] as string, /^m v1 inference: sketching turned off: .*predicted class 7/);
});

it("an input with NaN features is skipped and counted, not sent", () => {
  const h = harness();
  const tracker = h.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, POLICY);
  const skipped = NC.cases.find((c) => c.indices === "skipped") as Case;
  tracker?.add(skipped.raw, skipped.predicted, skipped.confidence, 1);
  assert.deepEqual([h.sketcher.skipped, h.sketcher.closeWindows(true)], [1, 0]);
});

it("a disabled monitor policy or a package without a profile gives no tracker and no error", () => {
  const h = harness();
  const off = h.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, { ...POLICY, enabled: false });
  const none = h.sketcher.tracker("m", 1, "pkg", null, "NC", NC.sample_shape, POLICY);
  assert.deepEqual([off, none, h.errors.length], [null, null, 0]);
});

const DP: MonitorPolicy = { enabled: true, window_s: 3600, max_rows: 2, epsilon_per_day: 2.4 };

it("with DP a window is not closed early at flush, nor when full, and is sent with noise once over", () => {
  const h = harness();
  h.now.t = 86_400 * 100;
  const tracker = h.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, DP);
  for (const c of NC.cases.slice(0, 3)) tracker?.add(c.raw, c.predicted, c.confidence, h.now.t + 1);
  assert.equal(h.sketcher.closeWindows(true), 0);
  h.now.t += 3600;
  assert.equal(h.sketcher.closeWindows(true), 1);
  const event = h.events[0] as TelemetryEvent;
  assert.deepEqual([event.type, event.ts, event.epsilon, h.spent.get(100)], ["profile", 86_400 * 100, 2.4 / 24, 2.4 / 24]);
  assert.equal(typeof event.sketch, "string");
});

it("with DP a window beyond the day's budget is withheld, and the next day spends again", () => {
  const h = harness();
  const policy = { ...DP, window_s: 43_200, epsilon_per_day: 1 }; // two windows a day, 0.5 each
  h.spent.set(0, 0.75); // spent earlier today (persisted by the queue)
  const tracker = h.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, policy);
  const c = NC.cases[0] as Case;
  tracker?.add(c.raw, c.predicted, c.confidence, 10);
  tracker?.add(c.raw, c.predicted, c.confidence, 86_400 + 10); // closes day 0's window: over budget
  h.now.t = 86_400 + 43_200;
  h.sketcher.closeWindows(false);
  assert.deepEqual([h.sketcher.withheld, h.events.length, h.spent.get(1)], [1, 1, 0.5]);
});

it("the geometric noise has mean 0 and the variance 2a/(1-a)^2 of its epsilon", () => {
  const random = seeded(42);
  const counts = new Array(20_000).fill(5);
  const { counts: noisy } = privatize(counts, 10, 4, 1, random);
  const a = Math.exp(-1 / 5);
  const mean = noisy.reduce((s, x) => s + (x - 5), 0) / noisy.length;
  const variance = noisy.reduce((s, x) => s + (x - 5 - mean) ** 2, 0) / noisy.length;
  const expected = (2 * a) / (1 - a) ** 2;
  assert.ok(Math.abs(mean) < 0.2, `mean ${mean}`);
  assert.ok(Math.abs(variance / expected - 1) < 0.05, `variance ${variance}, expected ${expected}`);
  assert.ok(noisy.every(Number.isInteger) && noisy.some((x) => x < 5) && noisy.some((x) => x > 5));
});

it("open windows and the day's epsilon survive a restart through the queue file", async () => {
  const storage = new MemoryStorage();
  const before = harness();
  before.now.t = 1000;
  const c = NC.cases[0] as Case;
  before.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, POLICY)?.add(c.raw, c.predicted, c.confidence, 1001);
  const queue = new TelemetryQueue(storage);
  queue.windowSource = () => before.sketcher.openWindows();
  assert.equal(queue.spendPrivacy(0, 0.5, 1), true);
  await queue.save();

  const reopened = new TelemetryQueue(storage);
  await reopened.load();
  const after = harness();
  after.sketcher.resume(reopened.windows);
  after.now.t = 1010;
  after.sketcher.tracker("m", 1, "pkg", NC.profile, "NC", NC.sample_shape, POLICY)?.add(c.raw, c.predicted, c.confidence, 1011);
  after.sketcher.closeWindows(true);
  assert.deepEqual([after.events.length, after.events[0]?.n, after.events[0]?.ts], [1, 2, 960]);
  assert.deepEqual([reopened.spendPrivacy(0, 0.5, 1), reopened.spendPrivacy(0, 0.5, 1)], [true, false]);
});

it("a queue file written before sketches loads with no windows", async () => {
  const storage = new MemoryStorage();
  await storage.write(
    "telemetry.json",
    new TextEncoder().encode(JSON.stringify({ pending: [], inflight: null, counter: 3, feedback: [], dropped: 0 })),
  );
  const queue = new TelemetryQueue(storage);
  await queue.load();
  assert.deepEqual([queue.windows, queue.spendPrivacy(0, 1, 1)], [[], true]);
});

const CLOUD_ONLY_ENTRY = {
  name: "m",
  download_policy: { wifi_only: false, charging_only: false, max_cellular_bytes: 0 },
  hybrid: { mode: "cloud", threshold: 0.5, cloud_route: "/v1/models/m/predict", cloud_variant: null, timeout_ms: 1000, max_retries: 0 },
  package: null,
};

it("an entry's monitor policy is read with the defaults for what it leaves out, and absent from older servers", () => {
  const given = parseEntry({ ...CLOUD_ONLY_ENTRY, monitor: { window_s: 600, epsilon_per_day: 2 } }, 0).monitor;
  const absent = parseEntry(CLOUD_ONLY_ENTRY, 0).monitor;
  assert.deepEqual(given, { enabled: true, window_s: 600, max_rows: 10_000, epsilon_per_day: 2 });
  assert.deepEqual(absent, { enabled: true, window_s: 3600, max_rows: 10_000, epsilon_per_day: null });
});

it("a monitor policy out of its range refuses the entry with protocol_error naming the field", () => {
  for (const [monitor, field] of [
    [{ window_s: 10 }, "monitor.window_s"],
    [{ epsilon_per_day: 0 }, "monitor.epsilon_per_day"],
    [{ enabled: "yes" }, "monitor.enabled"],
  ] as const) {
    assert.throws(
      () => parseEntry({ ...CLOUD_ONLY_ENTRY, monitor }, 0),
      (err: unknown) => isKind(err, "protocol_error") && (err as Error).message.includes(field),
    );
  }
});
