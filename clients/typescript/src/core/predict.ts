/**
 * Prediction with the hybrid policy of the model's check-in entry (docs/protocol.md):
 * `local` runs the device model; `cloud` calls the cloud route; `cascade` runs locally and
 * asks the cloud when the top probability is below `threshold`, returning the local answer
 * as `fallback` when the cloud is unreachable, slow, failing or its breaker is open. With no
 * usable local model it goes to the cloud. Cloud calls use the entry's `timeout_ms` and
 * `max_retries` (backoff with jitter); a 4xx is not retried and does not count against the
 * breaker. The schema's normalization is applied once, before either model.
 */
import { toHex } from "./bytes.js";
import type { CaptureTap } from "./capture.js";
import type { DeviceCore } from "./device.js";
import type { HybridPolicy } from "./entry.js";
import { fail, isKind, PocketMLError } from "./errors.js";
import { answerError, fetchWithTimeout, readJson, withRetries } from "./net.js";
import type { TelemetryEvent } from "./queue.js";
import type { Session } from "./runtime.js";
import { normalize, type PreparedSchema, prepareSchema } from "./schema.js";
import type { SketchTracker } from "./sketch.js";

export interface Prediction {
  label: string;
  index: number;
  confidence: number;
  probabilities: Float32Array;
  source: "local" | "cloud" | "fallback";
  /** The version that answered (the cloud's for `cloud`, the local one otherwise). */
  version: number | null;
  latencyMs: number;
  predictionId: string;
}

const LOCAL_ONLY: HybridPolicy = {
  mode: "local",
  threshold: 0,
  cloud_route: "/v1/",
  cloud_variant: null,
  timeout_ms: 1500,
  max_retries: 0,
};

interface Snapshot {
  generation: number;
  policy: HybridPolicy;
  session: Session | null;
  version: number | null;
  variant: string | null;
  prepared: PreparedSchema | null;
  batchShape: number[];
  /** Consented capture of this model (null: its policy is off or absent). */
  tap: CaptureTap | null;
  /** Bins what the local model scores into its version's profile (null: not sketched). */
  sketch: SketchTracker | null;
}

function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp((logits[i] as number) - max);
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / sum;
  return out;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i;
  return best;
}

/** A flat sample as the nested lists of its shape (what the cloud route takes). */
function nest(flat: Float32Array, shape: readonly number[]): unknown {
  if (shape.length <= 1) return Array.from(flat);
  const [, ...rest] = shape;
  const step = rest.reduce((n, d) => n * d, 1);
  return Array.from({ length: shape[0] as number }, (_, i) => nest(flat.subarray(i * step, (i + 1) * step), rest));
}

/** One model name on this device: `device.model("digits").predict(raw)`. */
export class ModelPredictor {
  private snap: Snapshot | null = null;
  private counter = 0;
  private readonly prefix: string;

  constructor(
    readonly name: string,
    private readonly core: DeviceCore,
  ) {
    const bytes = new Uint8Array(5);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(core.random() * 256);
    this.prefix = toHex(bytes);
  }

  private async snapshot(): Promise<Snapshot> {
    if (this.snap !== null && this.snap.generation === this.core.generation) return this.snap;
    const generation = this.core.generation;
    const entry = this.core.entries.get(this.name);
    const local = await this.core.local(this.name);
    const schema = entry?.schema ?? local?.schema ?? null;
    const prepared = schema === null ? null : prepareSchema(schema);
    this.snap = {
      generation,
      policy: entry?.hybrid ?? LOCAL_ONLY,
      session: local?.session ?? null,
      version: local?.record.version ?? null,
      variant: local?.record.variant ?? null,
      prepared,
      batchShape: [1, ...(prepared?.sampleShape ?? [])],
      tap: null,
      sketch:
        local === null || schema === null || prepared === null
          ? null
          : await this.core.sketchTracker(this.name, local.record, schema, prepared.sampleShape),
    };
    const capture = entry?.capture;
    const drifted = capture?.when === "drifted" ? (this.snap.sketch?.driftTest(capture.drifted_bins) ?? null) : null;
    this.snap.tap = this.core.capture?.tap(this.name, capture, drifted) ?? null;
    return this.snap;
  }

  /** Predict one raw sample (flat, in the schema input's layout) as the hybrid policy says. */
  async predict(raw: ArrayLike<number>): Promise<Prediction> {
    const started = this.core.clock();
    const snap = this.snap !== null && this.snap.generation === this.core.generation ? this.snap : await this.snapshot();
    const x = snap.prepared === null ? Float32Array.from(raw) : normalize(snap.prepared, raw);
    const predictionId = `${this.prefix}-${++this.counter}`;
    if (snap.session === null || snap.policy.mode === "cloud") {
      // No usable local model (not installed yet, failed to load): the cloud answers, whatever
      // the mode, as docs/protocol.md and the Python SDK say.
      return this.offer(snap, null, x, this.fromCloud(await this.cloud(x, snap, predictionId), snap, started, predictionId, "cloud"));
    }
    let probs = await snap.session.run(x, snap.batchShape);
    if (snap.prepared?.isLogits) probs = softmax(probs);
    const index = argmax(probs);
    const confidence = probs[index] as number;
    if (snap.sketch !== null) snap.sketch.add(raw, index, confidence, this.core.wall()); // the local answer, whoever answers
    if (snap.policy.mode === "cascade" && confidence < snap.policy.threshold) {
      try {
        // Escalated or fallen back: offered without the raw input, so `drifted` skips them (as Python).
        return this.offer(snap, null, x, this.fromCloud(await this.cloud(x, snap, predictionId), snap, started, predictionId, "cloud"));
      } catch (err) {
        if (!isKind(err, "unavailable")) throw err;
        return this.offer(snap, null, x, this.finish(snap, started, predictionId, probs, index, "fallback", snap.version));
      }
    }
    return this.offer(snap, raw, x, this.finish(snap, started, predictionId, probs, index, "local", snap.version));
  }

  /** Offer a prediction of a model on the device to consented capture (a null test when it is off). */
  private offer(snap: Snapshot, raw: ArrayLike<number> | null, x: Float32Array, p: Prediction): Prediction {
    snap.tap?.offer(x, snap.prepared === null ? [1, x.length] : snap.batchShape, p.predictionId, p.label, p.confidence, p.version, raw);
    return p;
  }

  private finish(
    snap: Snapshot,
    started: number,
    predictionId: string,
    probs: Float32Array,
    index: number,
    source: Prediction["source"],
    version: number | null,
    variant = snap.variant,
  ): Prediction {
    const label = snap.prepared?.labels[index] ?? String(index);
    const latencyMs = this.core.clock() - started;
    const confidence = probs[index] as number;
    this.core.queue.record({
      type: "inference",
      ts: Date.now() / 1000,
      model: this.name,
      version,
      variant,
      source,
      latency_ms: latencyMs,
      confidence,
      label,
      prediction_id: predictionId,
    } as TelemetryEvent);
    return { label, index, confidence, probabilities: probs, source, version, latencyMs, predictionId };
  }

  private fromCloud(answer: CloudAnswer, snap: Snapshot, started: number, predictionId: string, source: "cloud"): Prediction {
    return this.finish(snap, started, predictionId, answer.probabilities, answer.index, source, answer.version, answer.variant);
  }

  private async cloud(x: Float32Array, snap: Snapshot, predictionId: string): Promise<CloudAnswer> {
    const core = this.core;
    const policy = snap.policy;
    if (!core.breaker.allow()) {
      throw fail("circuit_open", `${this.name}: the cloud failed repeatedly; not calling it for a while (circuit breaker open).`);
    }
    const what = `POST ${policy.cloud_route}`;
    const body = JSON.stringify({
      inputs: [nest(x, snap.prepared?.sampleShape ?? [x.length])],
      device_id: core.deviceId,
      prediction_id: predictionId,
    });
    try {
      const answer = await withRetries(
        async () => {
          const response = await fetchWithTimeout(
            core.fetch,
            core.url(policy.cloud_route),
            {
              method: "POST",
              headers: { ...core.headers(), "Content-Type": "application/json" },
              body,
            },
            policy.timeout_ms,
            what,
          );
          if (response.status !== 200) throw await answerError(response, what);
          return parseAnswer(await readJson(response, what));
        },
        policy.max_retries,
        core.backoff,
        core.random,
        core.sleep,
      );
      core.breaker.recordSuccess();
      return answer;
    } catch (err) {
      const e = err instanceof PocketMLError ? err : fail("unavailable", String(err), err);
      if (isKind(e, "unavailable") || isKind(e, "protocol_error")) core.breaker.recordFailure();
      core.recordError(this.name, snap.version, "cloud", e);
      throw isKind(e, "protocol_error") ? fail("unavailable", e.message, e) : e;
    }
  }
}

interface CloudAnswer {
  index: number;
  label: string;
  probabilities: Float32Array;
  version: number | null;
  variant: string | null;
}

function parseAnswer(body: unknown): CloudAnswer {
  const b = body as { predictions?: unknown; version?: unknown; variant?: unknown };
  const first = Array.isArray(b?.predictions) ? (b.predictions[0] as Record<string, unknown> | undefined) : undefined;
  const probs = first?.probabilities;
  if (first === undefined || !Array.isArray(probs) || !probs.every((p) => typeof p === "number") || typeof first.index !== "number") {
    throw fail("protocol_error", "the cloud answered JSON without predictions[0].probabilities and index");
  }
  return {
    index: first.index,
    label: String(first.label ?? first.index),
    probabilities: Float32Array.from(probs as number[]),
    version: typeof b.version === "number" ? b.version : null,
    variant: typeof b.variant === "string" ? b.variant : null,
  };
}
