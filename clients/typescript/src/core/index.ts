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
import { DeviceCore, type DeviceOptions, type SyncReport } from "./device.js";
import { ModelPredictor } from "./predict.js";
import type { FlushReport } from "./queue.js";

export { fromBase64, toBase64, toHex } from "./bytes.js";
export { sha256Hex, signingKeyId } from "./crypto.js";
export type { DeviceFacts, DeviceOptions, DownloadConditions, ModelSync, NetworkType, SyncReport } from "./device.js";
export type { DownloadEvent } from "./download.js";
export type { DownloadPolicy, HybridPolicy, ModelEntry, PackageRef } from "./entry.js";
export { ERROR_KINDS, type ErrorCode, errorFromResponse, isKind, PocketMLError } from "./errors.js";
export { canonicalJson } from "./json.js";
export { acceptKeyring, followKeyrings, type Keyring, type KeyringJson, type Pin, parseKeyring, trustedKeys } from "./keyring.js";
export { Backoff, CircuitBreaker, type Fetch } from "./net.js";
export { type OrtLike, type OrtRuntimeOptions, type OrtSessionLike, ortRuntime } from "./ort.js";
export type { ModelPredictor, Prediction } from "./predict.js";
export { parseProfile, type ReferenceProfile, type SketchLayout } from "./profile.js";
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
export { DEFAULT_MONITOR, encodeSketch, epsilonPerWindow, type MonitorPolicy, type OpenWindow, type SketchTracker } from "./sketch.js";
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
  get sketches(): { skipped: number; withheld: number; sent: number } {
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
  }

  /** Write the telemetry queue to storage now (call it when the app goes to the background). */
  save(): Promise<void> {
    return this.core.queue.save();
  }

  /** Send the queued telemetry and feedback. */
  flush(): Promise<FlushReport> {
    return this.core.flush();
  }
}
