/**
 * @pocketml/device: the pocketml device SDK for TypeScript (React Native, web, Node).
 *
 * The core here imports no runtime: pass a `Runtime` (onnxruntime-node via
 * `@pocketml/device/node`, onnxruntime-web or onnxruntime-react-native) and a `Storage`.
 *
 * ```ts
 * const device = await Device.open({ serverUrl, deviceKey, facts, storage, runtime, trustedKeys });
 * await device.sync();
 * const p = await device.model("digits").predict(pixels);
 * device.feedback(p.predictionId, "digits", { label: "7" });
 * await device.flush();
 * ```
 */
import type { CaptureFlush, Redactor, SampleCapture } from "./capture.js";
import { DeviceCore, type DeviceOptions, type ForgetReport, type SyncReport } from "./device.js";
import { PocketMLError } from "./errors.js";
import { ModelPredictor } from "./predict.js";
import type { FlushReport } from "./queue.js";

export { fromBase64, toBase64, toHex } from "./bytes.js";
// SampleCapture itself is `@pocketml/device/capture` (outside the core bundle).
export {
  CAPTURE_FIELDS,
  type CaptureFlush,
  type CaptureMode,
  type CapturePolicy,
  type CaptureTap,
  parseCapturePolicy,
  type Redactor,
  type SampleCapture,
} from "./capture.js";
export { sha256Hex, signingKeyId } from "./crypto.js";
export type { DeviceFacts, DeviceOptions, DownloadConditions, ForgetReport, ModelSync, NetworkType, SyncReport } from "./device.js";
export type { DownloadEvent } from "./download.js";
export type { DownloadPolicy, HybridPolicy, ModelEntry, PackageRef } from "./entry.js";
export { ERROR_KINDS, type ErrorCode, errorFromResponse, isKind, PocketMLError } from "./errors.js";
export { canonicalJson } from "./json.js";
export { acceptKeyring, followKeyrings, type Keyring, type KeyringJson, type Pin, parseKeyring, trustedKeys } from "./keyring.js";
export { Backoff, CircuitBreaker, type Fetch } from "./net.js";
export { type OrtLike, type OrtRuntimeOptions, type OrtSessionLike, ortRuntime } from "./ort.js";
export type { ModelPredictor, Prediction } from "./predict.js";
export type { ReferenceProfile, SketchLayout } from "./profile.js";
export type { FlushReport, TelemetryEvent } from "./queue.js";
export type { Runtime, Session } from "./runtime.js";
export {
  type InputSpec,
  type ModelSchema,
  type Normalization,
  normalize,
  type OutputSpec,
  type PreparedSchema,
  prepareSchema,
} from "./schema.js";
export { DEFAULT_MONITOR, type MonitorPolicy, type OpenWindow, type Sketcher, type SketchHooks, type SketchTracker } from "./sketch.js";
export { MemoryStorage, type Storage } from "./storage.js";
export {
  extractModel,
  type Manifest,
  type MemberEntry,
  readMember,
  type TrustedKeys,
  type VerifiedPackage,
  verifyPackage,
} from "./verify.js";
export type { ZipEntry } from "./zip.js";

/** A device: check-in and install (`sync`), prediction (`model(name).predict`), telemetry. */
export class Device {
  private readonly predictors = new Map<string, ModelPredictor>();

  private constructor(private readonly core: DeviceCore) {}

  /** Open a device over its storage (reads the saved state; no network). */
  static async open(options: DeviceOptions): Promise<Device> {
    const core = new DeviceCore(options);
    await core.load();
    return new Device(core);
  }

  get deviceId(): string {
    return this.core.deviceId;
  }

  get breakerState(): "closed" | "open" | "half-open" {
    return this.core.breaker.state;
  }

  /** Events waiting in the telemetry queue. */
  get pendingEvents(): number {
    return this.core.queue.pending;
  }

  /** Profile sketches: inputs skipped (NaN features), DP windows withheld (budget spent), events queued. */
  get sketches(): { skipped: number; withheld: number; sent: number } | null {
    if (this.core.sketcher === null) return null; // not opted in (Device.open's `sketches`)
    const { skipped, withheld, sent } = this.core.sketcher;
    return { skipped, withheld, sent };
  }

  /** Check in and bring every model onto the device; a failed model keeps its previous package. */
  sync(): Promise<SyncReport> {
    return this.core.sync();
  }

  model(name: string): ModelPredictor {
    let predictor = this.predictors.get(name);
    if (predictor === undefined) {
      predictor = new ModelPredictor(name, this.core);
      this.predictors.set(name, predictor);
    }
    return predictor;
  }

  /** Queue feedback for a prediction: exactly one of `label` and `thumbs`. */
  feedback(predictionId: string, model: string, value: { label: string } | { thumbs: "up" | "down" }, version: number | null = null): void {
    const label = "label" in value ? value.label : null;
    const thumbs = "thumbs" in value ? value.thumbs : null;
    this.core.queue.addFeedback({ prediction_id: predictionId, model, version, label, thumbs, ts: Date.now() / 1000 });
    this.core.capture?.onFeedback(predictionId, label);
  }

  /** Write the telemetry queue (and finish the sample writes) now: call it when the app goes to the background. */
  async save(): Promise<void> {
    await this.core.queue.save();
    await this.core.capture?.settled();
  }

  /** Send the queued telemetry and feedback, then (a `forgetMe` still owed and) consented samples. */
  async flush(): Promise<FlushReport & { samples: CaptureFlush | null }> {
    const report = await this.core.flush();
    return { ...report, samples: await this.core.flushSamples() };
  }

  // -- consented capture (docs/typescript.md, "Consented capture") -------------------------------

  /** Whether the user consented to sample capture (persisted; default false). */
  get consent(): boolean {
    return this.core.capture?.consent ?? false;
  }

  /**
   * Record the user's choice (persisted); turning it off deletes the samples held and stored here.
   * Consenting needs `capture: new SampleCapture()` in `Device.open`'s options.
   */
  async setConsent(on: boolean): Promise<void> {
    const capture = this.core.capture;
    if (capture === null && on)
      throw new PocketMLError(
        "invalid_input",
        "this device has no capture: pass `capture: new SampleCapture()` (@pocketml/device/capture) to Device.open",
      );
    await capture?.setConsent(on);
  }

  /** Set (or remove) the PII hook: it gets a copy of each input about to be captured; null drops it. */
  setRedactor(fn: Redactor | null): void {
    if (this.core.capture) this.core.capture.redact = fn;
  }

  /** The sample queue (`samples.length`, `held`, `counters`), null without capture. */
  get capture(): SampleCapture | null {
    return this.core.capture;
  }

  /**
   * Delete this device's data: its samples and queued telemetry here, and on the server
   * (`DELETE /v1/device/data`). Unreachable: retried at every `flush()`, capturing nothing meanwhile.
   */
  forgetMe(): Promise<ForgetReport> {
    return this.core.forgetMe();
  }
}
