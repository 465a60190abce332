/**
 * The device: check-in with ETag/304, the pinned keyring, the manifest's entries, the
 * active models and their sessions, and telemetry delivery. Installing one model (download,
 * verify, bind, decrypt, load, switch) is `install.ts`; prediction with the hybrid policy is
 * `predict.ts`; the offline queue is `queue.ts`.
 *
 * Files it keeps in its Storage: `device.json` (the random device id), `checkin.json` (last
 * manifest + ETag), `trust.json` (the pinned keyring), `active.json` (which package is
 * active per model), `packages/<sha256>/` (plaintext model, `schema.json`, `ready.json`),
 * `partial/<sha256>.part` (downloads in progress), `telemetry.json` (the queue), `forget.json`
 * (a `forgetMe` the server has not confirmed) and `capture/` (consented samples: `capture.ts`).
 */
import { toHex } from "./bytes.js";
import type { CaptureFlush, SampleCapture, SampleSend } from "./capture.js";
import { sha256Hex } from "./crypto.js";
import type { DownloadEvent } from "./download.js";
import { type ModelEntry, parseEntry } from "./entry.js";
import { fail, PocketMLError } from "./errors.js";
import { type ReadyRecord, syncModel } from "./install.js";
import { decodeKeys, followKeyrings, type Keyring, type KeyringJson, type Pin, parseKeyring, trustedKeys } from "./keyring.js";
import { answerError, Backoff, CircuitBreaker, type Fetch, fetchWithTimeout, readJson, withRetries } from "./net.js";
import { type FeedbackBody, type FlushReport, type SendOutcome, type TelemetryEvent, TelemetryQueue } from "./queue.js";
import type { Runtime, Session } from "./runtime.js";
import type { ModelSchema } from "./schema.js";
import { DEFAULT_MONITOR, type Sketcher, type SketchTracker } from "./sketch.js";
import { readJsonFile, type Storage, writeJsonFile } from "./storage.js";

export interface DeviceFacts {
  /** `web` for a browser page (docs/protocol.md). */
  platform: "android" | "ios" | "linux" | "web";
  os_version: string;
  app_version: string;
  device_model?: string;
  device_class?: string;
  country?: string;
  /** A fixed device id; default: a random id made once and kept in storage. */
  device_id?: string;
}

export type NetworkType = "wifi" | "cellular" | "offline";

/** Predicates the SDK asks before a download (an app wires them to the OS APIs). */
export interface DownloadConditions {
  networkType?: () => NetworkType | Promise<NetworkType>;
  isCharging?: () => boolean | Promise<boolean>;
  /** Free bytes where packages are stored; default: the storage's `freeBytes`. */
  freeBytes?: () => Promise<number>;
}

export interface DeviceOptions {
  serverUrl: string;
  deviceKey: string;
  facts: DeviceFacts;
  storage: Storage;
  runtime: Runtime;
  /** The keyring shipped with the app (or a bare `{key_id: base64}`); none: trust on first use. */
  trustedKeys?: KeyringJson | Record<string, string>;
  fetch?: Fetch;
  conditions?: DownloadConditions;
  onDownload?: (event: DownloadEvent) => void;
  /** Hosts (besides the server's) packages may come from, without the device key (a CDN). */
  packageHosts?: readonly string[];
  /**
   * Uniform [0, 1) draws for ids, capture sampling and local-DP noise. Default: the platform's
   * CSPRNG (`secureRandom`). Pass a seeded one only in tests and simulations.
   */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Milliseconds, monotonic enough for latencies and the breaker (default `performance.now`). */
  clock?: () => number;
  downloadRetries?: number;
  downloadIdleTimeoutMs?: number;
  requestTimeoutMs?: number;
  breakerThreshold?: number;
  breakerCooldownMs?: number;
  /**
   * Profile sketches for monitoring: `new Sketcher()` from `@pocketml/device/sketch` (none: this
   * device sends no `profile` events, so drift and label-free accuracy do not see it).
   */
  sketches?: Sketcher;
  /** Unix seconds, for sketch windows (default `Date.now() / 1000`; tests pin it). */
  wallClock?: () => number;
  /** Consented capture: `new SampleCapture()` from `@pocketml/device/capture` (none: this device never captures). */
  capture?: SampleCapture;
  /** May samples of a `wifi_only` capture policy be uploaded now? Default: `conditions.networkType` is "wifi" (or unknown). */
  onWifi?: () => boolean | Promise<boolean>;
}

/** What `Device.forgetMe()` deleted. */
export interface ForgetReport {
  /** Consented samples deleted on the device. */
  samples: number;
  /** Telemetry events deleted on the device (queued feedback is deleted too). */
  events: number;
  /** The server's answer (row counts it deleted), null while the request is still owed. */
  server: unknown;
  /** The server was not reached: retried at every `flush()`; nothing is captured or sent meanwhile. */
  queued: boolean;
}

export interface ModelSync {
  model: string;
  status: "unchanged" | "current" | "updated" | "blocked" | "failed" | "cloud-only";
  version: number | null;
  variant: string | null;
  /** blocked: the policy (`wifi_only`, ...); failed: the stage (download, verify, key, load, disk, protocol). */
  reason?: string;
  bytesDownloaded: number;
  resumed: boolean;
  fromCache: boolean;
  error?: PocketMLError;
}

export interface SyncReport {
  notModified: boolean;
  models: Record<string, ModelSync>;
  isOk: boolean;
}

/**
 * Uniform doubles in [0, 1) from the platform's CSPRNG (`crypto.getRandomValues`: browsers,
 * Node, Expo; bare React Native needs react-native-get-random-values), else `Math.random`.
 * Ids, sampling draws and local-DP noise come from it: noise drawn from a generator whose
 * state the server could rebuild from the ids it sees would not protect anything.
 */
export function secureRandom(): () => number {
  const crypto = (globalThis as { crypto?: { getRandomValues?: (array: Uint32Array) => Uint32Array } }).crypto;
  const fill = crypto?.getRandomValues?.bind(crypto);
  if (fill === undefined) return Math.random;
  const words = new Uint32Array(64);
  let at = words.length;
  return () => {
    if (at + 2 > words.length) {
      fill(words);
      at = 0;
    }
    const high = (words[at++] as number) >>> 5; // 27 bits
    const low = (words[at++] as number) >>> 6; // 26 bits
    return (high * 67_108_864 + low) / 9_007_199_254_740_992; // 53 bits / 2^53
  };
}

function randomId(random: () => number): string {
  const bytes = new Uint8Array(8);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return toHex(bytes);
}

export class DeviceCore {
  readonly options: DeviceOptions;
  readonly storage: Storage;
  readonly runtime: Runtime;
  readonly queue: TelemetryQueue;
  readonly capture: SampleCapture | null;
  /** A `forgetMe` the server has not confirmed yet (`forget.json`): retried at every flush. */
  forgetOwed = false;
  readonly breaker: CircuitBreaker;
  readonly backoff = new Backoff(50, 1000);
  readonly fetch: Fetch;
  readonly random: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly clock: () => number;
  deviceId = "";
  appId: string | null = null;
  entries = new Map<string, ModelEntry>();
  active: Record<string, ReadyRecord> = {};
  private pin: Pin = null;
  private readonly sessions = new Map<string, { packageId: string; session: Session }>();
  /** Bumped whenever a model is activated: predictors rebuild their cached state. */
  generation = 0;
  /** Profile sketches of what the local models score (sketch.ts; null: not opted in). */
  readonly sketcher: Sketcher | null;
  readonly wall: () => number;

  constructor(options: DeviceOptions) {
    this.options = options;
    this.storage = options.storage;
    this.runtime = options.runtime;
    this.queue = new TelemetryQueue(options.storage);
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.random = options.random ?? secureRandom();
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.clock = options.clock ?? (() => performance.now());
    this.breaker = new CircuitBreaker(options.breakerThreshold ?? 5, options.breakerCooldownMs ?? 30_000, this.clock);
    this.capture = options.capture ?? null;
    this.wall = options.wallClock ?? (() => Date.now() / 1000);
    this.sketcher = options.sketches ?? null;
    if (this.sketcher !== null) {
      const sketcher = this.sketcher;
      sketcher.attach({
        emit: (event) => this.queue.record(event),
        reportError: (model, version, stage, message) => this.recordError(model, version, stage, fail("pocketml_error", message)),
        spend: (day, epsilon, budget) => this.queue.spendPrivacy(day, epsilon, budget),
        random: this.random,
        wall: this.wall,
      });
      this.queue.windowSource = () => sketcher.openWindows();
    }
  }

  /** The sketch tracker of a model's active version: null without a profile or when the policy is off. */
  async sketchTracker(name: string, record: ReadyRecord, schema: ModelSchema, sampleShape: number[]): Promise<SketchTracker | null> {
    const policy = this.entries.get(name)?.monitor ?? DEFAULT_MONITOR; // no entry: the defaults, as Python
    if (this.sketcher === null || !policy.enabled) return null;
    let profile: unknown = null; // none: the package has no profile
    try {
      const bytes = await this.storage.read(`packages/${record.package_id}/profile.json`);
      if (bytes !== null) profile = JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      profile = { unreadable: String(err) }; // reported once by the sketcher as unusable
    }
    const layout = schema.inputs[0]?.layout ?? "NCHW";
    return this.sketcher.tracker(name, record.version, record.package_id, profile, layout, sampleShape, policy);
  }

  /** Read the saved state (device id, last manifest, pin, active models, queue). */
  async load(): Promise<void> {
    const saved = await readJsonFile<{ device_id: string }>(this.storage, "device.json");
    this.deviceId = this.options.facts.device_id ?? saved?.device_id ?? randomId(this.random);
    if (saved?.device_id !== this.deviceId) await writeJsonFile(this.storage, "device.json", { device_id: this.deviceId });
    this.active = (await readJsonFile<Record<string, ReadyRecord>>(this.storage, "active.json")) ?? {};
    const last = await readJsonFile<{ manifest: Record<string, unknown> }>(this.storage, "checkin.json");
    if (last?.manifest) this.applyManifest(last.manifest);
    this.pin = await this.loadPin();
    await this.queue.load();
    this.forgetOwed = (await readJsonFile<{ owed: boolean }>(this.storage, "forget.json"))?.owed === true;
    await this.capture?.attach(this.storage, this.random);
    if (this.capture) this.capture.forgetOwed = this.forgetOwed;
    this.sketcher?.resume(this.queue.windows);
  }

  private async loadPin(): Promise<Pin> {
    const shipped = this.options.trustedKeys;
    let anchor: Pin = null;
    try {
      if (shipped !== undefined) anchor = "sequence" in shipped ? parseKeyring(shipped) : decodeKeys(shipped as Record<string, string>);
    } catch (err) {
      throw fail("invalid_input", `trustedKeys is not a keyring or {key_id: base64} map: ${(err as Error).message}`, err);
    }
    const stored = await readJsonFile<KeyringJson>(this.storage, "trust.json");
    let pinned: Keyring | null = null;
    try {
      pinned = stored === null ? null : parseKeyring(stored);
    } catch {
      pinned = null; // an unreadable pin file counts as no pin
    }
    if (pinned === null) return anchor;
    if (anchor !== null && "json" in anchor && (anchor as Keyring).json.sequence > pinned.json.sequence) return anchor;
    return pinned;
  }

  /** Take the manifest's valid entries; returns the refused ones (their previous entry stays). */
  private applyManifest(manifest: Record<string, unknown>): { name: string; error: PocketMLError }[] {
    const refused: { name: string; error: PocketMLError }[] = [];
    this.appId = typeof manifest.app_id === "string" ? manifest.app_id : this.appId;
    const models = Array.isArray(manifest.models) ? manifest.models : [];
    models.forEach((raw, i) => {
      try {
        const entry = parseEntry(raw, i);
        this.entries.set(entry.name, entry);
      } catch (err) {
        const name = (raw as { name?: unknown } | null)?.name;
        refused.push({ name: typeof name === "string" ? name.slice(0, 64) : `models[${i}]`, error: err as PocketMLError });
      }
    });
    // A check-in may change only the policy or the schema: predictors rebuild their snapshot.
    this.generation += 1;
    return refused;
  }

  headers(): Record<string, string> {
    return { Authorization: `Bearer ${this.options.deviceKey}` };
  }

  url(path: string): string {
    return this.options.serverUrl.replace(/\/+$/, "") + path;
  }

  /** Where a package is fetched from, and whether the device key may go with it (check 2). */
  packageUrl(url: string): { url: string; withKey: boolean } {
    const server = new URL(this.options.serverUrl);
    const target = new URL(url, `${server.origin}/`);
    if (target.username || target.password || (target.protocol !== "https:" && target.protocol !== "http:")) {
      throw fail("invalid_input", `package URL ${url.slice(0, 100)} is not an http(s) URL without credentials`);
    }
    if (target.origin === server.origin) return { url: target.href, withKey: true };
    if ((this.options.packageHosts ?? []).includes(target.hostname)) return { url: target.href, withKey: false };
    throw fail("invalid_input", `package URL host ${target.hostname} is neither the server nor an allowed package host`);
  }

  // -- check-in and sync ---------------------------------------------------------------------

  private heldModels(): Record<string, unknown> {
    return Object.fromEntries(
      Object.entries(this.active).map(([name, r]) => [name, { version: r.version, variant: r.variant, package_id: r.package_id }]),
    );
  }

  private checkinBody(): Record<string, unknown> {
    const { device_id: _, ...facts } = this.options.facts;
    return {
      ...facts,
      device_id: this.deviceId,
      formats: [...this.runtime.formats],
      ...(this.runtime.versions ? { runtimes: this.runtime.versions } : {}),
      models: this.heldModels(),
    };
  }

  /** `POST /v1/checkin` with `If-None-Match`; returns the manifest and whether it was a 304. */
  async checkin(): Promise<{ manifest: Record<string, unknown>; etag: string | null; notModified: boolean }> {
    const last = await readJsonFile<{ etag: string | null; manifest: Record<string, unknown> }>(this.storage, "checkin.json");
    const headers: Record<string, string> = { ...this.headers(), "Content-Type": "application/json" };
    if (last?.etag && last.manifest) headers["If-None-Match"] = last.etag;
    const timeout = this.options.requestTimeoutMs ?? 30_000;
    const response = await withRetries(
      async () => {
        const r = await fetchWithTimeout(
          this.fetch,
          this.url("/v1/checkin"),
          { method: "POST", headers, body: JSON.stringify(this.checkinBody()) },
          timeout,
          "check-in",
        );
        if (r.status >= 500 || r.status === 408 || r.status === 429) throw await answerError(r, "check-in");
        return r;
      },
      2,
      this.backoff,
      this.random,
      this.sleep,
    );
    if (response.status === 304 && last?.manifest) return { manifest: last.manifest, etag: last.etag, notModified: true };
    if (response.status !== 200) throw await answerError(response, "check-in");
    const manifest = await readJson(response, "check-in");
    const m = manifest as { models?: unknown; app_id?: unknown } | null;
    if (typeof m !== "object" || m === null || !Array.isArray(m.models) || typeof m.app_id !== "string" || m.app_id.length === 0) {
      throw fail("protocol_error", "check-in answered JSON without an app_id and a models list");
    }
    return { manifest: manifest as Record<string, unknown>, etag: response.headers.get("etag"), notModified: false };
  }

  private async followKeyring(manifest: Record<string, unknown>): Promise<void> {
    if (manifest.keyring === undefined || manifest.keyring === null || this.appId === null) return;
    const chain = Array.isArray(manifest.keyring_chain) ? manifest.keyring_chain : [];
    try {
      const next = followKeyrings(this.pin, manifest.keyring, chain, this.appId);
      if (next !== this.pin) {
        this.pin = next;
        await writeJsonFile(this.storage, "trust.json", next.json);
      }
    } catch (err) {
      // A refused offer changes nothing: the pin stays, models keep syncing against it. The
      // error is reported once per model of the manifest, as the Python SDK does.
      for (const name of this.entries.keys()) this.recordError(name, null, "verify", err as PocketMLError);
    }
  }

  trusted(): Record<string, Uint8Array> {
    if (this.pin === null) return {};
    return "json" in this.pin && this.pin.signatures instanceof Map
      ? trustedKeys(this.pin as Keyring)
      : { ...(this.pin as Record<string, Uint8Array>) };
  }

  /** Check in, then bring every model of the manifest onto the device. */
  async sync(): Promise<SyncReport> {
    const { manifest, etag, notModified } = await this.checkin();
    const refused = this.applyManifest(manifest);
    await this.followKeyring(manifest);
    const models: Record<string, ModelSync> = {};
    for (const entry of this.entries.values()) {
      const result = await syncModel(this, entry);
      models[entry.name] = notModified && result.status === "current" ? { ...result, status: "unchanged" } : result;
    }
    for (const { name, error } of refused) {
      this.recordError(name, null, "download", error);
      models[name] = {
        model: name,
        status: "failed",
        reason: "protocol",
        error,
        version: null,
        variant: null,
        bytesDownloaded: 0,
        resumed: false,
        fromCache: false,
      };
    }
    const isOk = Object.values(models).every((m) => m.status !== "failed");
    // Keep the ETag only when everything was applied, so a failed model is retried next time.
    await writeJsonFile(this.storage, "checkin.json", { etag: isOk ? etag : null, manifest });
    await this.queue.save();
    return { notModified, models, isOk };
  }

  /** Load the model once (check 9), then switch the model's active pointer atomically. */
  async activate(name: string, record: ReadyRecord, plain?: Uint8Array): Promise<void> {
    const session = await this.openSession(record, plain);
    const previous = this.sessions.get(name);
    this.active = { ...this.active, [name]: record };
    await writeJsonFile(this.storage, "active.json", this.active);
    this.sessions.set(name, { packageId: record.package_id, session });
    this.generation += 1;
    if (previous && previous.packageId !== record.package_id) await previous.session.dispose?.();
  }

  private async openSession(record: ReadyRecord, plain?: Uint8Array): Promise<Session> {
    // Bytes just extracted were hashed against model_sha256 by the install; only bytes read
    // back from storage are hashed again.
    const bytes = plain ?? (await this.storage.read(record.model_file));
    if (bytes === null || (plain === undefined && sha256Hex(bytes) !== record.model_sha256)) {
      throw fail("package_mismatch", `the cached model of ${record.model} is missing or no longer hashes to its model_sha256.`);
    }
    return this.runtime.load(bytes, record.format, this.storage.localPath?.(record.model_file));
  }

  /** The active model's session and schema (loaded on first use after a cold start). */
  async local(name: string): Promise<{ session: Session; record: ReadyRecord; schema: ModelSchema | null } | null> {
    const record = this.active[name];
    if (record === undefined) return null;
    let held = this.sessions.get(name);
    if (held === undefined || held.packageId !== record.package_id) {
      try {
        held = { packageId: record.package_id, session: await this.openSession(record) };
      } catch (err) {
        this.recordError(name, record.version, "load", err instanceof PocketMLError ? err : fail("pocketml_error", String(err), err));
        return null;
      }
      this.sessions.set(name, held);
    }
    const schema = await readJsonFile<ModelSchema>(this.storage, `packages/${record.package_id}/schema.json`);
    return { session: held.session, record, schema };
  }

  // -- telemetry -------------------------------------------------------------------------------

  recordError(model: string, version: number | null, stage: string, error: PocketMLError): void {
    this.queue.record({
      type: "error",
      ts: Date.now() / 1000,
      model: model || "_device",
      version,
      stage: ["download", "verify", "load", "inference", "cloud"].includes(stage) ? stage : "download",
      message: error.message.slice(0, 500),
      code: error.code,
    } as TelemetryEvent);
  }

  private async post(path: string, body: unknown, what: string): Promise<SendOutcome> {
    return (await this.send("POST", path, body, what)).outcome;
  }

  /** One request with the device key: stored (the answer's JSON), retry later, or refused for good. */
  private async send(
    method: string,
    path: string,
    body: unknown,
    what: string,
    dropOn: (status: number) => boolean = (status) => status !== 401 && status !== 408 && status !== 429,
  ): Promise<SampleSend> {
    let response: Response;
    try {
      response = await fetchWithTimeout(
        this.fetch,
        this.url(path),
        {
          method,
          headers: { ...this.headers(), "Content-Type": "application/json", Date: new Date().toUTCString() },
          body: body === undefined ? undefined : JSON.stringify(body),
        },
        this.options.requestTimeoutMs ?? 30_000,
        what,
      );
    } catch (err) {
      return { outcome: "retry", answer: String(err) };
    }
    const text = await response.text().catch(() => "");
    if (response.status < 300) {
      try {
        return { outcome: "stored", answer: JSON.parse(text) };
      } catch {
        return { outcome: "stored", answer: null };
      }
    }
    const answer = `${what}: HTTP ${response.status}`;
    // A 4xx the server will never accept is dropped (no poison kept in the queue); 5xx, timeouts,
    // rate limits and an unknown key are retried.
    if (response.status >= 500 || !dropOn(response.status)) return { outcome: "retry", answer };
    return { outcome: "drop", answer };
  }

  // -- consented samples (capture.ts) ------------------------------------------------------------

  /** Retry a `forgetMe` still owed, then send the queued samples (after telemetry, as Python does). */
  async flushSamples(): Promise<CaptureFlush | null> {
    if (this.forgetOwed) await this.sendForget();
    if (this.capture === null) return null;
    const { onWifi, conditions } = this.options;
    const wifi = onWifi ? await onWifi() : ((await conditions?.networkType?.()) ?? "wifi") === "wifi";
    // Samples are deleted only when the server refuses them for what they are (413, 422), as
    // Python does; any other answer (a server without /v1/samples: 404) keeps them for later.
    return this.capture.flush(this.deviceId, this.options.facts.device_class ?? "unknown", Boolean(wifi), (body) =>
      this.send("POST", "/v1/samples", body, "samples", (status) => status === 413 || status === 422),
    );
  }

  /** Delete this device's samples and queued telemetry here, then its data on the server. */
  async forgetMe(): Promise<ForgetReport> {
    await this.setForgetOwed(true); // first: nothing is captured from here on
    const samples = (await this.capture?.forget()) ?? 0;
    const { events } = this.queue.clear(); // queued events and feedback: gone (a flush under way stops)
    await this.queue.save();
    const server = await this.sendForget();
    return { samples, events, server, queued: server === null };
  }

  private async sendForget(): Promise<unknown> {
    const path = `/v1/device/data?device_id=${encodeURIComponent(this.deviceId)}`;
    const result = await this.send("DELETE", path, undefined, "forget");
    if (result.outcome !== "stored") return null;
    await this.setForgetOwed(false);
    return result.answer ?? {};
  }

  private async setForgetOwed(owed: boolean): Promise<void> {
    this.forgetOwed = owed;
    if (this.capture) this.capture.forgetOwed = owed;
    await writeJsonFile(this.storage, "forget.json", { owed });
  }

  /** Send queued telemetry (batched, idempotent per batch id) and feedback. */
  async flush(): Promise<FlushReport> {
    this.sketcher?.closeWindows(true); // open windows go now (early, unless DP is on)
    const facts = this.options.facts;
    const device = {
      platform: facts.platform,
      app_version: facts.app_version,
      ...(facts.device_class ? { device_class: facts.device_class } : {}),
    };
    return this.queue.flush(
      this.deviceId,
      (batchId, events) => this.post("/v1/telemetry", { batch_id: batchId, device_id: this.deviceId, device, events }, "telemetry"),
      (body: FeedbackBody) => this.post("/v1/feedback", { ...body, device_id: this.deviceId }, "feedback"),
    );
  }
}
