/**
 * Consented sample capture (docs/loop.md, "Consented capture"), as the Python reference
 * `pocketml.device._capture` does it. Nothing is captured unless the app called
 * `Device.setConsent(true)` (persisted, default off) AND the version's `capture` policy of the
 * check-in is enabled. A prediction is eligible per `policy.when` and kept with probability
 * `policy.rate`; the app's redactor runs on a copy of the input before it is held or stored
 * (null drops it). In `feedback` mode the sample waits in memory (at most `max_hold`, oldest
 * evicted) for `Device.feedback`; otherwise it is stored at once and a later label is attached
 * while it is unsent. `drifted` needs the bin test of the version's reference profile (profile
 * sketches): without it such a policy captures nothing (and says so once on the console).
 *
 * The class lives outside the core bundle (`@pocketml/device/capture`, 2.3 KB min + gzip): an
 * app that captures passes `capture: new SampleCapture()` to `Device.open`; the core only parses
 * the policy and calls the tap. Storage: `capture/settings.json` (consent) and
 * `capture/samples.log`: a header line (the day's byte budget, the counters, how many samples
 * it was written with) and one JSON line per sample. Keeping a sample appends one line (never a
 * rewrite on the predict path; a torn last line is skipped on load); a late label and each flush
 * rewrite the file. The predict path only copies and redacts the input: the hold keeps the
 * Float32Array, and its base64 is made once, by the queued append (a 3x224x224 input: `offer`
 * went from ~80-110 ms to ~0.5 ms, the encoding from ~40 ms to ~4 ms). A failed append (a full
 * disk) drops that sample, never the prediction. A batch's id is written before its request
 * goes out, so a retry (even after a restart) re-sends the same ids, and the server stores each
 * sample once.
 */
import { toHex } from "./bytes.js";
import { fail } from "./errors.js";
import { MemoryStorage, readJsonFile, type Storage, writeJsonFile } from "./storage.js";

export type CaptureMode = "all" | "low_confidence" | "feedback" | "drifted";

/** A version's capture policy (`protocol.CapturePolicy`; defaults and limits below). */
export interface CapturePolicy {
  enabled: boolean;
  rate: number;
  when: CaptureMode;
  low_confidence_below: number;
  drifted_bins: Record<string, number[]>;
  max_bytes_per_day: number;
  wifi_only: boolean;
  retention_days: number;
  max_hold: number;
}

/**
 * `protocol.CAPTURE_POLICY_FIELDS` in order: [name, type, minimum, maximum, default]
 * (test/capture.test.ts checks it against conformance/capture.json, made from the Python table).
 */
export const CAPTURE_FIELDS: readonly (readonly [keyof CapturePolicy, string, number | null, number | null, unknown])[] = [
  ["enabled", "boolean", null, null, false],
  ["rate", "number", 0, 1, 1],
  ["when", "string", null, null, "feedback"],
  ["low_confidence_below", "number", 0, 1, 0.7],
  ["drifted_bins", "object", null, null, {}],
  ["max_bytes_per_day", "integer", 0, 1e10, 5_000_000],
  ["wifi_only", "boolean", null, null, true],
  ["retention_days", "integer", 1, 365, 30],
  ["max_hold", "integer", 1, 10_000, 200],
];
export const CAPTURE_MODES: readonly CaptureMode[] = ["all", "low_confidence", "feedback", "drifted"];
export const MAX_SAMPLES_PER_BATCH = 100;
export const MAX_SAMPLE_BATCH_BYTES = 512 * 1024;

function bad(where: string, expected: string, got: unknown) {
  return fail("invalid_input", `${where} must be ${expected}; got ${JSON.stringify(got)?.slice(0, 80)}`);
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

function checkBins(value: unknown, where: string): Record<string, number[]> {
  if (typeof value !== "object" || value === null || Array.isArray(value) || Object.keys(value).length > 256)
    throw bad(where, "an object of at most 256 feature names", value);
  const out: Record<string, number[]> = {};
  for (const [name, indices] of Object.entries(value)) {
    if (name.length === 0 || name.length > 128) throw bad(where, "feature names of 1-128 chars", name);
    if (!Array.isArray(indices) || indices.length > 4096) throw bad(`${where}.${name}`, "a list of at most 4096 bin indices", indices);
    if (!indices.every((i) => isInt(i) && i >= 0)) throw bad(`${where}.${name}`, "bin indices (ints >= 0)", indices);
    out[name] = [...new Set(indices as number[])].sort((a, b) => a - b);
  }
  return out;
}

/** Parse a `capture` object strictly (missing fields take the defaults); throws `invalid_input`. */
export function parseCapturePolicy(raw: unknown, where = "capture"): CapturePolicy {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad(where, "an object", raw);
  const r = raw as Record<string, unknown>;
  const names = CAPTURE_FIELDS.map((f) => f[0] as string);
  const unknown = Object.keys(r)
    .filter((k) => !names.includes(k))
    .sort();
  if (unknown.length > 0) throw fail("invalid_input", `${where} has unknown field(s) ${unknown.join(", ")}; known: ${names.join(", ")}`);
  const out: Record<string, unknown> = {};
  for (const [name, type, low, high, fallback] of CAPTURE_FIELDS) {
    const v = name in r ? r[name] : fallback;
    const at = `${where}.${name}`;
    if (type === "boolean") {
      if (typeof v !== "boolean") throw bad(at, "true or false", v);
    } else if (type === "object") {
      out[name] = checkBins(v, at);
      continue;
    } else if (name === "when") {
      if (!CAPTURE_MODES.includes(v as CaptureMode)) throw bad(at, `one of ${CAPTURE_MODES.join(", ")}`, v);
    } else if (type === "integer" ? !isInt(v) : typeof v !== "number" || !Number.isFinite(v)) {
      throw bad(at, type === "integer" ? "an integer" : "a finite number", v);
    } else if (!((v as number) >= (low as number) && (v as number) <= (high as number))) {
      throw bad(at, `in [${low}, ${high}]`, v);
    }
    out[name] = v;
  }
  return out as unknown as CapturePolicy;
}

/** `fn(model, input, shape) -> input | null`: gets a copy of the normalized input; null drops the sample. */
export type Redactor = (model: string, input: Float32Array, shape: readonly number[]) => Float32Array | null;

/** One sample as the device stores it: the wire sample (without `device_class`) and its upload terms. */
export interface StoredSample {
  sample_id: string;
  model: string;
  version: number;
  prediction_id: string;
  input: { shape: number[]; dtype: "float32"; data: string };
  predicted: string;
  confidence: number;
  label: string | null;
  captured_at: number;
  wifi_only: boolean;
  retention_days: number;
  bytes: number;
  batch_id: string | null;
}

/** The `POST /v1/samples` body (docs/protocol.md) of stored samples. */
export function sampleBody(batchId: string, deviceId: string, deviceClass: string, samples: readonly StoredSample[]) {
  return {
    batch_id: batchId,
    device_id: deviceId,
    samples: samples.map(({ wifi_only, retention_days, bytes, batch_id, ...wire }) => ({ ...wire, device_class: deviceClass })),
  };
}

/**
 * Little-endian float32 bytes as base64 (the wire's `input.data`). The characters go into a byte
 * array, made a string 8 K at a time: ~4 ms for a 3x224x224 input where a string grown per byte
 * took ~40 ms (and a 32 K spread as long). A little-endian platform's bytes are read in place.
 */
export function encodeValues(values: Float32Array): string {
  // Built per call: a module-level table would stay in the core bundle, which imports the policy parser.
  const B64 = Uint8Array.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", (ch) => ch.charCodeAt(0));
  let bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (new Uint8Array(Float32Array.of(1).buffer)[3] !== 0x3f) {
    // a big-endian platform
    bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] as number, true);
  }
  const n = bytes.length;
  const full = n - (n % 3);
  const out = new Uint8Array(Math.ceil(n / 3) * 4);
  let o = 0;
  for (let i = 0; i < full; i += 3) {
    const triple = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    out[o] = B64[triple >> 18] as number;
    out[o + 1] = B64[(triple >> 12) & 63] as number;
    out[o + 2] = B64[(triple >> 6) & 63] as number;
    out[o + 3] = B64[triple & 63] as number;
    o += 4;
  }
  if (full < n) {
    const triple = ((bytes[full] as number) << 16) | ((bytes[full + 1] ?? 0) << 8);
    out.set(
      [B64[triple >> 18] as number, B64[(triple >> 12) & 63] as number, full + 1 < n ? (B64[(triple >> 6) & 63] as number) : 61, 61],
      o,
    );
  }
  const parts: string[] = [];
  for (let i = 0; i < out.length; i += 0x2000)
    parts.push(String.fromCharCode.apply(null, out.subarray(i, i + 0x2000) as unknown as number[]));
  return parts.join("");
}

/**
 * A kept sample's wire `input`: `data` is encoded on its first read (the append, a rewrite or
 * the upload, all off the predict path), once; the tensor is then let go.
 */
function lazyInput(shape: readonly number[], values: Float32Array): StoredSample["input"] {
  let tensor: Float32Array | null = values;
  let data = "";
  return {
    shape: [...shape],
    dtype: "float32",
    get data() {
      if (tensor !== null) [data, tensor] = [encodeValues(tensor), null];
      return data;
    },
  };
}

/** What one sample upload did (Python's `CaptureFlush`). */
export interface CaptureFlush {
  sent: number;
  duplicates: number;
  pending: number;
  expired: number;
  /** Why nothing was sent: "no consent", "forget pending", "not on wifi"; else null. */
  skipped: string | null;
  /** Why the upload stopped early (network), else null. */
  error: string | null;
}

/** What the device's sender returned: stored (with the server's JSON), refused for good, or retry later. */
export interface SampleSend {
  outcome: "stored" | "drop" | "retry";
  answer?: unknown;
}

/** A redacted prediction waiting for its label (feedback mode) or to be stored: the tensor, not its encoding. */
type Held = Omit<StoredSample, "sample_id" | "batch_id" | "label" | "input"> & { shape: number[]; values: Float32Array };
const LOG = "capture/samples.log";
const SETTINGS = "capture/settings.json";
const DAY = 86_400;

/** The device's consented samples: consent, the hold, the redactor, the log and the upload. */
export class SampleCapture {
  consent = false;
  /** A `forgetMe` the server has not confirmed yet (the device keeps it): nothing is captured or sent meanwhile. */
  forgetOwed = false;
  redact: Redactor | null = null;
  /** Samples stored on the device (sent or not yet acknowledged). */
  samples: StoredSample[] = [];
  /** `dropped_budget`, `dropped_redacted`, `dropped_disk`, `evicted`, `expired`. */
  counters: Record<string, number> = {};
  private readonly hold = new Map<string, [Held, number]>(); // pid -> sample, its policy's max_bytes_per_day
  private budget = [-1, 0]; // [UTC day, tensor bytes kept that day]
  private io: Promise<unknown> = Promise.resolve();
  private warned = false;
  /** Samples `attach` expired: the next flush reports them. */
  private expiredUnreported = 0;
  private storage: Storage = new MemoryStorage();
  /** The sampling draws and ids (the device's `random` once attached). */
  random: () => number = Math.random;

  /** @param wall unix seconds (tests pin it). */
  constructor(private readonly wall: () => number = () => Date.now() / 1000) {}

  /** Bind to the device's storage and RNG, then read consent and the stored samples (`Device.open` calls it). */
  async attach(storage: Storage, random: () => number): Promise<void> {
    this.storage = storage;
    this.random = random;
    this.samples = [];
    const s = await readJsonFile<{ consent?: boolean }>(this.storage, SETTINGS);
    this.consent = s?.consent === true;
    const raw = await this.storage.read(LOG);
    let counted = 0;
    const byId = new Map<string, StoredSample>();
    for (const line of raw === null ? [] : new TextDecoder().decode(raw).split("\n")) {
      try {
        const item = JSON.parse(line);
        if (item.budget) [this.budget, this.counters, counted] = [item.budget, item.counters, item.n];
        else if (typeof item.sample_id === "string" && !byId.has(item.sample_id)) {
          if (counted-- <= 0) this.spend(item); // appended after the header: not in its budget yet
          byId.set(item.sample_id, item);
        }
      } catch {
        // an empty line, or one torn by a kill or a full disk: that sample is lost
      }
    }
    this.samples = [...byId.values()];
    // An app unused for a month must not keep (or upload) what retention promised to delete.
    this.expiredUnreported = this.expire();
    if (this.expiredUnreported > 0) this.rewrite().catch(() => undefined);
  }

  /** Drop samples older than their `retention_days` (a claimed batch too: retention is a promise to the user); returns how many. */
  private expire(): number {
    const now = this.wall();
    const kept = this.samples.filter((s) => s.captured_at >= now - s.retention_days * DAY);
    const expired = this.samples.length - kept.length;
    this.samples = kept;
    this.counters.expired = (this.counters.expired ?? 0) + expired;
    return expired;
  }

  private count(name: string): void {
    this.counters[name] = (this.counters[name] ?? 0) + 1;
  }

  private spend(s: { captured_at: number; bytes: number }): void {
    const day = Math.floor(s.captured_at / DAY);
    this.budget = [day, (day === this.budget[0] ? (this.budget[1] as number) : 0) + s.bytes];
  }

  /** Queue a storage write after the ones before it (they never interleave). */
  private queueIo(write: () => Promise<void>): Promise<unknown> {
    this.io = this.io.catch(() => undefined).then(write);
    return this.io;
  }

  /** Resolves when every write queued so far is done (or failed). */
  async settled(): Promise<void> {
    await this.io.catch(() => undefined);
  }

  /** Rewrite the log as the queue stands when the write runs (an append queued before it may repeat a line: read once). */
  private rewrite(): Promise<unknown> {
    return this.queueIo(() => {
      const header = { budget: this.budget, counters: this.counters, n: this.samples.length };
      return this.storage.write(LOG, lines([header, ...this.samples]));
    });
  }

  private saveSettings(): Promise<void> {
    return writeJsonFile(this.storage, SETTINGS, { consent: this.consent });
  }

  /** Persist the user's choice; turning it off deletes what is held and stored (returns how many were stored). */
  async setConsent(on: boolean): Promise<number> {
    if (typeof on !== "boolean") throw fail("invalid_input", `consent must be true or false; got ${String(on)}`);
    this.consent = on;
    await this.saveSettings();
    return on ? 0 : this.forget();
  }

  /**
   * Delete every held and stored sample; returns how many were stored. The log keeps its header:
   * the day's byte budget and the counters outlive the samples (as Python's `clear()`), or
   * consent off and on and a restart would grant the same day its budget again.
   */
  async forget(): Promise<number> {
    const n = this.samples.length;
    this.hold.clear();
    this.samples = [];
    await this.rewrite();
    return n;
  }

  /**
   * The per-version hook a predictor calls after each prediction (null: the policy is off or
   * absent). `drifted` is the `drifted` mode's bin test, from the version's reference profile
   * (`SketchTracker.driftTest`): without it a `drifted` policy captures nothing, as in Python.
   */
  tap(
    model: string,
    policy: CapturePolicy | null | undefined,
    drifted: ((raw: ArrayLike<number>) => boolean) | null = null,
  ): CaptureTap | null {
    if (!policy?.enabled) return null;
    if (policy.when === "drifted" && drifted === null && !this.warned) {
      this.warned = true;
      console.warn(
        `pocketml: capture "drifted" (${model}) needs the version's reference profile and profile sketches ` +
          "(Device.open({ sketches: new Sketcher() })): nothing is captured",
      );
    }
    return new CaptureTap(this, model, policy, drifted);
  }

  /** Redact, then hold (feedback mode) or store one eligible, sampled prediction. */
  keep(
    model: string,
    version: number,
    policy: CapturePolicy,
    pid: string,
    seen: Float32Array,
    shape: readonly number[],
    predicted: string,
    confidence: number,
  ): void {
    const copy = seen.slice();
    let values: Float32Array | null = copy;
    try {
      if (this.redact !== null) values = this.redact(model, copy, shape);
    } catch {
      values = null; // an app's hook must never break a prediction
    }
    // The tensor is held, not encoded: a new array the hook returned may be its reused scratch buffer.
    if (values instanceof Float32Array && values !== copy) values = values.slice();
    if (!(values instanceof Float32Array) || values.length !== seen.length || !allFinite(values)) {
      this.count("dropped_redacted");
      return;
    }
    const held: Held = {
      model,
      version,
      prediction_id: pid,
      shape: [...shape],
      values,
      predicted,
      confidence: Math.min(Math.max(confidence, 0), 1),
      captured_at: this.wall(),
      wifi_only: policy.wifi_only,
      retention_days: policy.retention_days,
      bytes: values.length * 4,
    };
    if (policy.when !== "feedback") {
      this.write(held, null, policy.max_bytes_per_day);
      return;
    }
    this.hold.set(pid, [held, policy.max_bytes_per_day]);
    for (const oldest of this.hold.keys()) {
      if (this.hold.size <= policy.max_hold) break;
      this.hold.delete(oldest);
      this.count("evicted");
    }
  }

  private write(held: Held, label: string | null, maxBytes: number): void {
    const day = Math.floor(held.captured_at / DAY);
    if ((day === this.budget[0] ? (this.budget[1] as number) : 0) + held.bytes > maxBytes) {
      this.count("dropped_budget");
      return;
    }
    const { shape, values, ...terms } = held;
    const sample: StoredSample = { ...terms, input: lazyInput(shape, values), sample_id: this.newId(), label, batch_id: null };
    this.spend(sample);
    this.samples.push(sample);
    // A leading newline ends a line torn by a kill, so only that one sample is lost.
    this.queueIo(() => this.storage.append(LOG, new TextEncoder().encode(`\n${JSON.stringify(sample)}\n`))).catch(() => {
      // A full disk: this sample is lost, the prediction is not (the next write tries again).
      this.samples = this.samples.filter((s) => s !== sample);
      this.count("dropped_disk");
    });
  }

  private newId(): string {
    return toHex(Uint8Array.from({ length: 16 }, () => Math.floor(this.random() * 256)));
  }

  /** A label arrived: store a held sample with it, or attach it to unsent ones (null: thumbs only, no label). */
  onFeedback(pid: string, label: string | null): void {
    const held = this.hold.get(pid);
    this.hold.delete(pid);
    if (label === null) return;
    if (held !== undefined) {
      if (this.consent && !this.forgetOwed) this.write(held[0], label, held[1]);
      return;
    }
    const unsent = this.samples.filter((s) => s.prediction_id === pid && s.batch_id === null);
    for (const s of unsent) s.label = label;
    if (unsent.length > 0) this.rewrite().catch(() => undefined);
  }

  /** Predictions held in memory waiting for feedback. */
  get held(): number {
    return this.hold.size;
  }

  /** Why nothing may be sent now ("no consent", "forget pending"), else null. */
  private refusal(): string | null {
    if (!this.consent) return "no consent";
    return this.forgetOwed ? "forget pending" : null;
  }

  /** The oldest batch claimed before (a retry) the network allows, else the oldest unsent samples it allows. */
  private claim(onWifi: boolean): StoredSample[] {
    const ok = (s: StoredSample) => onWifi || !s.wifi_only;
    const claimedIds = new Set(this.samples.map((s) => s.batch_id).filter((id) => id !== null));
    for (const id of claimedIds) {
      const claimed = this.samples.filter((s) => s.batch_id === id);
      if (claimed.every(ok)) return claimed;
    }
    const chosen: StoredSample[] = [];
    let size = 0;
    const waiting = this.samples.filter((s) => s.batch_id === null && ok(s)).sort((a, b) => a.captured_at - b.captured_at);
    for (const s of waiting.slice(0, MAX_SAMPLES_PER_BATCH)) {
      if (chosen.length > 0 && size + s.bytes > MAX_SAMPLE_BATCH_BYTES) break;
      chosen.push(s);
      size += s.bytes;
    }
    return this.samples.filter((s) => chosen.includes(s)); // chosen oldest first, sent in stored order (as Python)
  }

  /** Send stored samples in batches (see the module); never throws on the network. */
  async flush(deviceId: string, deviceClass: string, onWifi: boolean, send: (body: unknown) => Promise<SampleSend>): Promise<CaptureFlush> {
    await this.io.catch(() => undefined);
    const expired = this.expire() + this.expiredUnreported;
    this.expiredUnreported = 0;
    const report: CaptureFlush = { sent: 0, duplicates: 0, pending: 0, expired, skipped: null, error: null };
    report.skipped = this.refusal();
    if (report.skipped === null) {
      for (let batch = this.claim(onWifi); batch.length > 0; batch = this.claim(onWifi)) {
        const id = batch[0]?.batch_id ?? this.newId();
        if (batch[0]?.batch_id === null) {
          for (const s of batch) s.batch_id = id;
          await this.rewrite(); // the id is on storage before the first byte is sent
        }
        // The user may have withdrawn consent or asked to be forgotten meanwhile (then the
        // batch is deleted here too): ask again before each send.
        report.skipped = this.refusal();
        if (report.skipped !== null) break;
        batch = this.samples.filter((s) => s.batch_id === id);
        if (batch.length === 0) continue;
        const result = await send(sampleBody(id, deviceId, deviceClass, batch));
        if (result.outcome === "retry") {
          report.error = `samples not sent (${String(result.answer)}); kept for the next flush`;
          break;
        }
        const a = (result.outcome === "stored" ? result.answer : null) as { accepted?: number; duplicates?: number } | null;
        report.sent += a?.accepted ?? 0;
        report.duplicates += a?.duplicates ?? 0;
        this.samples = this.samples.filter((s) => s.batch_id !== id); // acknowledged, or refused for good
      }
      if (report.skipped === null && !onWifi && this.samples.some((s) => s.batch_id === null && s.wifi_only))
        report.skipped = "not on wifi";
    }
    report.pending = this.samples.length;
    await this.rewrite().catch(() => undefined);
    return report;
  }
}

function allFinite(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
  return true;
}

const lines = (items: unknown[]) => new TextEncoder().encode(items.map((i) => `${JSON.stringify(i)}\n`).join(""));

/** What a predictor calls after each prediction of one version: the only capture cost on the predict path. */
export class CaptureTap {
  constructor(
    readonly capture: SampleCapture,
    readonly model: string,
    readonly policy: CapturePolicy,
    private readonly drifted: ((raw: ArrayLike<number>) => boolean) | null = null,
  ) {}

  /** Capture this prediction if consent, the policy and the sampling rate say so: a flag, the `when` test, one draw; never throws. */
  offer(
    seen: Float32Array,
    shape: readonly number[],
    pid: string,
    predicted: string,
    confidence: number,
    version: number | null,
    raw: ArrayLike<number> | null = null,
  ): void {
    const c = this.capture;
    const p = this.policy;
    if (!c.consent || c.forgetOwed || version === null) return;
    if (p.when === "drifted" && (raw === null || this.drifted === null || !this.drifted(raw))) return;
    if (p.when === "low_confidence" && confidence >= p.low_confidence_below) return;
    if (p.rate < 1 && c.random() >= p.rate) return;
    try {
      c.keep(this.model, version, p, pid, seen, shape, predicted, confidence);
    } catch {
      // capture must never break a prediction
    }
  }
}
