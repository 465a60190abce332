/**
 * On-device sketches, as the Python SDK's `pocketml.device._sketcher` (its docstring is the
 * behaviour): every input the local model scores is binned into its version's reference
 * profile (`profile.ts`), counts add up in one open window per version, aligned to
 * multiples of the monitor policy's `window_s` in unix time, and a window is sent as one
 * `profile` event through the telemetry queue when an input arrives after its end, when it
 * holds `max_rows` inputs, or at `flush()` (early, unless DP is on).
 *
 * **Never fail a prediction.** A profile that does not read, or an input the binner cannot
 * take, gives one `error` event and turns sketching off for that version. An input with NaN
 * features is skipped (`skipped`).
 *
 * **An app kill loses little.** Open windows and the UTC day's spent epsilon are saved in the
 * queue file with the events (`TelemetryQueue`), and resumed by the next `Device.open`.
 *
 * **Local differential privacy.** With `epsilon_per_day`, a closing window's counts and `n`
 * get two-sided geometric noise of `epsilon_per_window` (sensitivity: blocks + 1), drawn with
 * the device's `random`; a window is sent only while the day's spent epsilon plus its own
 * stays within the budget, else it is withheld (`withheld`).
 *
 * The `sketch` text is base64url (no padding) of zigzag varints where a zero run is `0x00`
 * then its length (docs/protocol.md "Profile events"): `encodeSketch` is byte-identical to
 * Python's `encode_sketch` for counts within ±2^53.
 */
import { toBase64 } from "./bytes.js";
import { Binner, parseProfile, type ReferenceProfile, type SketchLayout } from "./profile.js";
import type { TelemetryEvent } from "./queue.js";

export { parseProfile, type ReferenceProfile, type SketchLayout } from "./profile.js";

const DAY_S = 86_400;

/** How a device sketches one model version (the check-in entry's `monitor`). */
export interface MonitorPolicy {
  enabled: boolean;
  window_s: number;
  max_rows: number;
  epsilon_per_day: number | null;
}

export const DEFAULT_MONITOR: MonitorPolicy = { enabled: true, window_s: 3600, max_rows: 10_000, epsilon_per_day: null };

/** The epsilon one window spends: the day's budget over its windows (null without DP). */
export function epsilonPerWindow(policy: MonitorPolicy): number | null {
  return policy.epsilon_per_day === null ? null : policy.epsilon_per_day / Math.max(1, Math.floor(DAY_S / policy.window_s));
}

/** A window as the queue file keeps it. */
export interface OpenWindow {
  model: string;
  version: number;
  start: number;
  n: number;
  counts: number[];
  layout: SketchLayout;
  policy: MonitorPolicy;
}

function varint(value: number, out: number[]): void {
  while (value > 0x7f) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/**
 * The `sketch` string of counts in layout order (see the module).
 * @throws RangeError for a count that is not a safe integer.
 */
export function encodeSketch(counts: ArrayLike<number>): string {
  const out: number[] = [];
  let run = 0;
  for (let i = 0; i < counts.length; i++) {
    const value = counts[i] as number;
    if (value === 0) {
      run += 1;
      continue;
    }
    if (run) {
      out.push(0);
      varint(run, out);
      run = 0;
    }
    if (!Number.isSafeInteger(value)) throw new RangeError(`a sketch count must be a safe integer; got ${value}`);
    if (Math.abs(value) < 2 ** 52) varint(value < 0 ? -2 * value - 1 : 2 * value, out);
    else {
      // Its zigzag value is past 2^53, where numbers lose bits: 7 bits at a time as a bigint.
      let big = value < 0 ? -2n * BigInt(value) - 1n : 2n * BigInt(value);
      for (; big > 0x7fn; big >>= 7n) out.push(Number(big & 0x7fn) | 0x80);
      out.push(Number(big));
    }
  }
  if (run) {
    out.push(0);
    varint(run, out);
  }
  return toBase64(Uint8Array.from(out)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

/** A geometric number of failures (`P(k) = (1 - a) a^k`) by inversion of one uniform draw. */
function failures(a: number, random: () => number): number {
  return Math.floor(Math.log(1 - random()) / Math.log(a));
}

/**
 * Counts (and `n`, the last slot) with two-sided geometric noise of `epsilon`: one
 * difference of two geometric numbers per count, `a = exp(-epsilon / (blocks + 1))`
 * (`pocketml.sketch.privatize`). Noisy counts are never clipped.
 */
export function privatize(
  counts: ArrayLike<number>,
  n: number,
  blocks: number,
  epsilon: number,
  random: () => number,
): { counts: number[]; n: number } {
  const a = Math.exp(-epsilon / (blocks + 1));
  const noisy = Array.from(counts, (c) => c + failures(a, random) - failures(a, random));
  return { counts: noisy, n: n + failures(a, random) - failures(a, random) };
}

/** An open window: its counts in a typed array (the hot path increments them). */
interface Window extends Omit<OpenWindow, "counts"> {
  counts: Float64Array;
}

function sameLayout(a: SketchLayout, b: SketchLayout): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a predictor holds for its active version: `add` per scored input. */
export class SketchTracker {
  enabled = true;

  constructor(
    private readonly sketcher: Sketcher,
    private readonly key: string,
    private readonly binner: Binner,
  ) {}

  /** The capture policy's `drifted` test on this version's profile (see `Binner.driftTest`). */
  driftTest(driftedBins: Readonly<Record<string, readonly number[]>>): ((raw: ArrayLike<number>) => boolean) | null {
    return this.binner.driftTest(driftedBins);
  }

  /** Count one scored input (raw, as given to predict); never throws. */
  add(raw: ArrayLike<number>, predicted: number, confidence: number, ts: number): void {
    if (!this.enabled) return;
    let indices: Int32Array | null;
    try {
      indices = this.binner.indices(raw, predicted, confidence);
    } catch (err) {
      this.enabled = false; // sketching must never fail a prediction
      this.sketcher.report(this.key, "inference", `sketching turned off: ${(err as Error)?.message ?? err}`);
      return;
    }
    if (indices === null) this.sketcher.skipped += 1;
    else this.sketcher.count(this.key, indices, ts);
  }
}

/**
 * The device's open windows, their closing into `profile` events, the DP budget.
 *
 * @param emit queues one event (`TelemetryQueue.record`).
 * @param reportError `(model, version, stage, message)` for an `error` event: stage `load` for
 *   a profile that cannot be used, `inference` for an input that turned sketching off.
 * @param spend `(day, epsilon, budget)`: spends a UTC day's epsilon when it fits (persisted).
 * @param random uniform in [0, 1) for the noise (the device's `random`).
 * @param wall unix seconds.
 */
/** What a device gives its sketcher: the telemetry queue and its clocks. */
export interface SketchHooks {
  /** Queue one `profile` event. */
  emit: (event: TelemetryEvent) => void;
  /** Queue one `error` event (a profile that cannot be used). */
  reportError: (model: string, version: number | null, stage: "load" | "inference", message: string) => void;
  /** Spend `epsilon` of `budget` on UTC day `day`; false when it does not fit (persisted). */
  spend: (day: number, epsilon: number, budget: number) => boolean;
  random: () => number;
  /** Unix seconds. */
  wall: () => number;
}

/**
 * The device's profile sketches. Opt-in, outside the core bundle (`@pocketml/device/sketch`):
 * `Device.open({ ..., sketches: new Sketcher() })`. Without it nothing is sketched and the
 * server's drift and label-free accuracy reports see nothing from this device.
 */
export class Sketcher {
  skipped = 0;
  withheld = 0;
  /** `profile` events queued so far. */
  sent = 0;
  private readonly windows = new Map<string, Window>();
  private readonly profiles = new Map<string, ReferenceProfile | null>();

  private hooks: SketchHooks | null = null;

  /** `Device.open` attaches the device's queue and clocks; a test may pass them here. */
  constructor(hooks?: SketchHooks) {
    if (hooks !== undefined) this.attach(hooks);
  }

  /** Wire the sketcher to a device (called by `Device.open` with the `sketches` option). */
  attach(hooks: SketchHooks): void {
    if (this.hooks !== null && this.hooks !== hooks) throw new Error("this Sketcher already belongs to a device: make one per Device");
    this.hooks = hooks;
  }

  private get h(): SketchHooks {
    if (this.hooks === null) throw new Error("the Sketcher is not attached: pass it to Device.open({ sketches })");
    return this.hooks;
  }

  /**
   * The tracker of a version (null when the policy turns sketching off, the package has no
   * profile, or the profile cannot be used: then one `error` event, once per package).
   * A window of this version resumed from the queue file is kept when its layout matches.
   */
  tracker(
    model: string,
    version: number,
    packageId: string,
    profileJson: unknown,
    layout: string,
    sampleShape: readonly number[],
    policy: MonitorPolicy,
  ): SketchTracker | null {
    if (!policy.enabled || profileJson === null || profileJson === undefined) return null;
    const key = `${version}:${model}`;
    let binner: Binner;
    try {
      if (!this.profiles.has(packageId)) this.profiles.set(packageId, parseProfile(profileJson));
      const profile = this.profiles.get(packageId);
      if (profile === null || profile === undefined) return null;
      binner = new Binner(profile, layout, sampleShape);
    } catch (err) {
      const reported = this.profiles.get(packageId) === null;
      this.profiles.set(packageId, null);
      if (!reported) this.report(key, "load", `the profile cannot be used; not sketching: ${(err as Error)?.message ?? err}`);
      return null;
    }
    let window = this.windows.get(key);
    if (window !== undefined && !sameLayout(window.layout, binner.profile.layout)) window = undefined; // another profile: not ours
    if (window === undefined) window = this.fresh(model, version, binner.profile.layout, policy, this.h.wall());
    window.policy = policy;
    this.windows.set(key, window);
    return new SketchTracker(this, key, binner);
  }

  /** One `error` event for a sketching failure. */
  report(key: string, stage: "load" | "inference", message: string): void {
    const cut = key.indexOf(":");
    this.h.reportError(key.slice(cut + 1), Number(key.slice(0, cut)), stage, message);
  }

  private fresh(model: string, version: number, layout: SketchLayout, policy: MonitorPolicy, now: number): Window {
    const total = layout.sizes.reduce((s, x) => s + x, 0);
    const start = Math.floor(now / policy.window_s) * policy.window_s;
    return { model, version, start, n: 0, counts: new Float64Array(total), layout, policy };
  }

  /** Add one input's bins; close the window first when `ts` is past it, after when full. */
  count(key: string, indices: Int32Array, ts: number): void {
    let window = this.windows.get(key) as Window;
    if (ts >= window.start + window.policy.window_s) window = this.close(key, ts, false);
    const counts = window.counts;
    for (let i = 0; i < indices.length; i++) (counts[indices[i] as number] as number)++;
    window.n += 1;
    if (window.policy.epsilon_per_day === null && window.n >= window.policy.max_rows) this.close(key, ts, true);
  }

  /**
   * Close every window that is over, and with `early` every one without DP too.
   * @returns how many `profile` events were queued.
   */
  closeWindows(early: boolean): number {
    const now = this.h.wall();
    const before = this.sent;
    for (const [key, w] of [...this.windows]) {
      const over = now >= w.start + w.policy.window_s;
      if (w.n && (over || (early && w.policy.epsilon_per_day === null))) this.close(key, now, false);
    }
    return this.sent - before;
  }

  /** Replace the window by a fresh one (aligned to `now`, or the same start) and send it. */
  private close(key: string, now: number, keepStart: boolean): Window {
    const old = this.windows.get(key) as Window;
    const next = this.fresh(old.model, old.version, old.layout, old.policy, now);
    if (keepStart) next.start = old.start;
    this.windows.set(key, next);
    if (old.n) this.send(old);
    return next;
  }

  private send(w: Window): void {
    const event: TelemetryEvent = { type: "profile", ts: w.start, model: w.model, version: w.version };
    let counts: ArrayLike<number> = w.counts;
    let n = w.n;
    const epsilon = epsilonPerWindow(w.policy);
    if (epsilon !== null) {
      if (!this.h.spend(Math.floor(w.start / DAY_S), epsilon, w.policy.epsilon_per_day as number)) {
        this.withheld += 1;
        return;
      }
      ({ counts, n } = privatize(w.counts, n, w.layout.names.length, epsilon, this.h.random));
      event.epsilon = epsilon;
    }
    event.sketch = encodeSketch(counts);
    event.n = n;
    this.h.emit(event);
    this.sent += 1;
  }

  /** The open windows, for the queue file. */
  openWindows(): OpenWindow[] {
    return [...this.windows.values()].map((w) => ({ ...w, counts: Array.from(w.counts) }));
  }

  /** Resume the windows an earlier run saved (a row this SDK cannot read is dropped). */
  resume(rows: readonly unknown[]): void {
    for (const raw of rows) {
      const row = raw as OpenWindow;
      try {
        const total = row.layout.sizes.reduce((s, x) => s + x, 0);
        const ok =
          typeof row.model === "string" &&
          Number.isInteger(row.version) &&
          Number.isFinite(row.start) &&
          Number.isInteger(row.n) &&
          Array.isArray(row.counts) &&
          row.counts.length === total &&
          row.counts.every(Number.isInteger) &&
          row.layout.names.length === row.layout.sizes.length &&
          row.policy.window_s >= 1;
        if (ok) this.windows.set(`${row.version}:${row.model}`, { ...row, counts: Float64Array.from(row.counts) });
      } catch {
        // another SDK version's row: dropped
      }
    }
  }
}
