/**
 * Installing one model of a check-in (checks 2-9 of docs/protocol.md "Before installing a
 * package"): the download conditions and free space, the resumable download, the file's
 * sha256, package verification, the binding to the entry, the content key, extraction, a
 * test load, then the switch of the active model. Each step that can fail names its stage
 * (disk, download, verify, key, load); a failure deletes what it wrote and leaves the
 * previous model active.
 */
import { fromBase64 } from "./bytes.js";
import { sha256Hex } from "./crypto.js";
import type { DeviceCore, ModelSync } from "./device.js";
import { downloadPackage } from "./download.js";
import type { ModelEntry } from "./entry.js";
import { fail, PocketMLError } from "./errors.js";
import { answerError, fetchWithTimeout, readJson } from "./net.js";
import type { TelemetryEvent } from "./queue.js";
import { readJsonFile, writeJsonFile } from "./storage.js";
import { extractModel, MODEL_EXTENSIONS, readMember, verifyPackage } from "./verify.js";

/** What `ready.json` records: the signed manifest a cached package was installed from. */
export interface ReadyRecord {
  app_id: string;
  model: string;
  version: number;
  variant: string;
  format: string;
  model_sha256: string;
  package_id: string;
  model_file: string;
}

class Stage extends Error {
  constructor(
    readonly stage: string,
    readonly error: PocketMLError,
  ) {
    super(error.message);
  }
}

async function at<T>(stage: string, work: () => Promise<T> | T): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof Stage) throw err;
    const e =
      err instanceof PocketMLError ? err : fail("pocketml_error", `${stage} failed: ${String((err as Error)?.message ?? err)}`, err);
    throw new Stage(stage, e);
  }
}

function unchangedSync(entry: ModelEntry): ModelSync {
  return {
    model: entry.name,
    status: "current",
    version: entry.version,
    variant: entry.variant,
    bytesDownloaded: 0,
    resumed: false,
    fromCache: false,
  };
}

/** True when an install record names exactly the entry's package (checks 7 and 9 of a cached package). */
export function binds(record: ReadyRecord | null | undefined, entry: ModelEntry, appId: string | null): boolean {
  return (
    record !== null &&
    record !== undefined &&
    record.app_id === appId &&
    record.model === entry.name &&
    record.version === entry.version &&
    record.variant === entry.variant &&
    record.format === entry.format &&
    record.model_sha256 === entry.model_sha256 &&
    record.package_id === entry.package?.sha256
  );
}

/** Bring one manifest entry onto the device; any failure keeps the previous model active. */
export async function syncModel(core: DeviceCore, entry: ModelEntry): Promise<ModelSync> {
  const base = unchangedSync(entry);
  const ref = entry.package;
  if (ref === null) return { ...base, status: "cloud-only" };
  if (binds(core.active[entry.name], entry, core.appId)) return base;
  try {
    const cached = await readJsonFile<ReadyRecord>(core.storage, `packages/${ref.sha256}/ready.json`);
    if (binds(cached, entry, core.appId)) {
      await at("load", () => core.activate(entry.name, cached as ReadyRecord));
      return { ...base, status: "updated", fromCache: true };
    }
    const blocked = await blockedReason(core, entry);
    if (blocked !== null) return { ...base, status: "blocked", reason: blocked };
    const { bytesFetched, resumed } = await fetchPackage(core, entry);
    await install(core, entry);
    return { ...base, status: "updated", bytesDownloaded: bytesFetched, resumed };
  } catch (err) {
    const stage = err instanceof Stage ? err : new Stage("internal", fail("pocketml_error", String(err), err));
    core.recordError(
      entry.name,
      entry.version,
      stage.stage === "disk" ? "download" : stage.stage === "key" ? "verify" : stage.stage,
      stage.error,
    );
    return { ...base, status: "failed", reason: stage.stage, error: stage.error };
  }
}

async function blockedReason(core: DeviceCore, entry: ModelEntry): Promise<string | null> {
  const policy = entry.download_policy;
  const network = (await core.options.conditions?.networkType?.()) ?? "wifi";
  if (network === "offline") return "offline";
  if (policy.wifi_only && network !== "wifi") return "wifi_only";
  if (policy.charging_only && !((await core.options.conditions?.isCharging?.()) ?? true)) return "charging_only";
  if (network === "cellular" && (entry.package?.size ?? 0) > policy.max_cellular_bytes) return "max_cellular_bytes";
  return null;
}

async function fetchPackage(core: DeviceCore, entry: ModelEntry): Promise<{ bytesFetched: number; resumed: boolean }> {
  const ref = entry.package as NonNullable<ModelEntry["package"]>;
  const part = `partial/${ref.sha256}.part`;
  await at("disk", async () => {
    const free = await (core.options.conditions?.freeBytes ?? core.storage.freeBytes?.bind(core.storage))?.();
    const have = (await core.storage.size(part)) ?? 0;
    const need = Math.ceil(ref.size * 2.5) - have; // the zip, the plaintext model, headroom
    if (free !== undefined && free < need) {
      throw fail(
        "pocketml_error",
        `not enough free space for ${entry.name}: needs ${need} bytes (2.5x the package), has ${free}. Nothing was written.`,
      );
    }
  });
  const target = await at("download", () => core.packageUrl(ref.url));
  const started = core.clock();
  const result = await at("download", () =>
    downloadPackage({
      fetch: core.fetch,
      url: target.url,
      headers: target.withKey ? core.headers() : {},
      sha256: ref.sha256,
      size: ref.size,
      model: entry.name,
      version: entry.version,
      storage: core.storage,
      part,
      retries: core.options.downloadRetries ?? 4,
      backoff: core.backoff,
      random: core.random,
      sleep: core.sleep,
      idleTimeoutMs: core.options.downloadIdleTimeoutMs ?? 30_000,
      onEvent: core.options.onDownload,
    }),
  );
  core.queue.record({
    type: "download",
    ts: Date.now() / 1000,
    model: entry.name,
    version: entry.version,
    variant: entry.variant,
    bytes: result.bytesFetched,
    duration_ms: core.clock() - started,
    outcome: result.resumed ? "resumed" : "done",
  } as TelemetryEvent);
  return result;
}

/** Checks 5-9: file hash, package verification, binding, content key, extract, load, swap. */
async function install(core: DeviceCore, entry: ModelEntry): Promise<void> {
  const ref = entry.package as NonNullable<ModelEntry["package"]>;
  const part = `partial/${ref.sha256}.part`;
  const dir = `packages/${ref.sha256}`;
  try {
    const data = await at("verify", async () => {
      const bytes = (await core.storage.read(part)) ?? new Uint8Array(0);
      if (sha256Hex(bytes) !== ref.sha256)
        throw fail("integrity_failed", `the downloaded package of ${entry.name} does not hash to the announced sha256; it was deleted.`);
      return bytes;
    });
    const pkg = await at("verify", () => {
      const verified = verifyPackage(data, core.trusted(), core.appId ?? "");
      const m = verified.manifest;
      const found = [m.app_id, m.model, m.version, m.variant, m.model_format, m.model_sha256, m.encryption?.key_id ?? null];
      const wanted = [core.appId, entry.name, entry.version, entry.variant, entry.format, entry.model_sha256, ref.content_key_id];
      if (JSON.stringify(found) !== JSON.stringify(wanted)) {
        throw fail(
          "package_mismatch",
          `the package is ${JSON.stringify(found)}, not the one the check-in announced (${JSON.stringify(wanted)}): it is not activated.`,
        );
      }
      return verified;
    });
    const key = ref.content_key_id === null ? null : await at("key", () => contentKey(core, ref.content_key_id as string));
    const plain = await at("verify", () => extractModel(pkg, key));
    const format = entry.format as string;
    const modelFile = `${dir}/model.${MODEL_EXTENSIONS[format]?.[0] ?? format}`;
    const record: ReadyRecord = {
      app_id: pkg.manifest.app_id,
      model: pkg.manifest.model,
      version: pkg.manifest.version,
      variant: pkg.manifest.variant,
      format: pkg.manifest.model_format,
      model_sha256: pkg.manifest.model_sha256,
      package_id: ref.sha256,
      model_file: modelFile,
    };
    await at("disk", async () => {
      await core.storage.write(modelFile, plain);
      await core.storage.write(`${dir}/schema.json`, readMember(pkg, "schema.json"));
      // The version's reference profile: what its scored inputs are sketched into (sketch.ts).
      if ("profile.json" in pkg.manifest.members) await core.storage.write(`${dir}/profile.json`, readMember(pkg, "profile.json"));
    });
    await at("load", () => core.activate(entry.name, record, plain));
    await at("disk", () => writeJsonFile(core.storage, `${dir}/ready.json`, record));
    await core.storage.remove(part);
  } catch (err) {
    const stage = err as Stage;
    if (stage.stage === "verify" || stage.stage === "load") await core.storage.remove(part);
    // Nothing half-written stays, unless another model's active package lives there.
    if (!Object.values(core.active).some((r) => r.package_id === ref.sha256)) await core.storage.remove(dir).catch(() => undefined);
    throw err;
  }
}

async function contentKey(core: DeviceCore, keyId: string): Promise<Uint8Array> {
  const what = `GET /v1/keys/${keyId}`;
  const response = await fetchWithTimeout(
    core.fetch,
    core.url(`/v1/keys/${encodeURIComponent(keyId)}`),
    { headers: core.headers() },
    core.options.requestTimeoutMs ?? 30_000,
    what,
  );
  if (response.status !== 200) throw await answerError(response, what);
  const body = (await readJson(response, what, 64 * 1024)) as { key_id?: unknown; key?: unknown };
  const key = typeof body?.key === "string" ? fromBase64(body.key) : null;
  if (body?.key_id !== keyId || key === null || key.length !== 32) {
    throw fail("integrity_failed", `${what} did not answer the key asked for as base64 of 32 bytes.`);
  }
  return key;
}
