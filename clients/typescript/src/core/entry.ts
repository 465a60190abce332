/**
 * The check-in manifest's model entries, checked field by field before any is used (check 1
 * of docs/protocol.md "Before installing a package"): a server speaking another protocol
 * version, or a network rewriting answers, fails here with `protocol_error` naming the
 * field, and the model's previous entry stays in force.
 */
import { type CapturePolicy, parseCapturePolicy } from "./capture.js";
import { fail } from "./errors.js";
import type { ModelSchema } from "./schema.js";
import { DEFAULT_MONITOR, type MonitorPolicy } from "./sketch.js";

export interface PackageRef {
  id: string;
  url: string;
  size: number;
  sha256: string;
  signing_key_id: string;
  content_key_id: string | null;
}

export interface HybridPolicy {
  mode: "local" | "cloud" | "cascade";
  threshold: number;
  cloud_route: string;
  cloud_variant: string | null;
  timeout_ms: number;
  max_retries: number;
}

export interface DownloadPolicy {
  wifi_only: boolean;
  charging_only: boolean;
  max_cellular_bytes: number;
}

export interface ModelEntry {
  name: string;
  /** Consented capture of this version (null: none, an older server: capture nothing). */
  capture: CapturePolicy | null;
  version: number | null;
  variant: string | null;
  format: string | null;
  precision: string | null;
  package: PackageRef | null;
  model_sha256: string | null;
  download_policy: DownloadPolicy;
  hybrid: HybridPolicy;
  schema: ModelSchema | null;
  /** How the active version is sketched (`monitor`; absent from older servers: the defaults). */
  monitor: MonitorPolicy;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const VARIANT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9_:-]{0,127}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const FORMATS = ["onnx", "ort", "tflite", "coreml"];

function bad(where: string, expected: string, value: unknown) {
  const shown = JSON.stringify(value)?.slice(0, 80);
  return fail("protocol_error", `check-in ${where} must be ${expected}; got ${shown}. Is the server speaking another protocol version?`);
}

function obj(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(where, "an object", value);
  return value as Record<string, unknown>;
}

function text(o: Record<string, unknown>, key: string, where: string, pattern: RegExp): string {
  const v = o[key];
  if (typeof v !== "string" || !pattern.test(v)) throw bad(`${where}.${key}`, `a string matching ${pattern}`, v);
  return v;
}

function int(o: Record<string, unknown>, key: string, where: string, low: number, high: number): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < low || v > high)
    throw bad(`${where}.${key}`, `an integer in [${low}, ${high}]`, v);
  return v;
}

function flag(o: Record<string, unknown>, key: string, where: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean") throw bad(`${where}.${key}`, "a boolean", v);
  return v;
}

function parsePackage(raw: unknown, where: string): PackageRef {
  const p = obj(raw, where);
  const url = p.url;
  if (typeof url !== "string" || url.length === 0 || url.length > 2048) throw bad(`${where}.url`, "a URL of at most 2048 chars", url);
  const contentKey = p.content_key_id;
  if (contentKey !== null && (typeof contentKey !== "string" || !ID.test(contentKey)))
    throw bad(`${where}.content_key_id`, "a key id or null", contentKey);
  return {
    id: text(p, "id", where, ID),
    url,
    size: int(p, "size", where, 1, 2 ** 32 - 1),
    sha256: text(p, "sha256", where, HEX64),
    signing_key_id: text(p, "signing_key_id", where, ID),
    content_key_id: contentKey as string | null,
  };
}

function parseHybrid(raw: unknown, where: string): HybridPolicy {
  const h = obj(raw, where);
  const mode = h.mode;
  if (mode !== "local" && mode !== "cloud" && mode !== "cascade") throw bad(`${where}.mode`, "local, cloud or cascade", mode);
  const route = h.cloud_route;
  if (typeof route !== "string" || !route.startsWith("/v1/") || route.includes("//") || route.includes("..") || route.length > 260) {
    throw bad(`${where}.cloud_route`, "a path under /v1/", route);
  }
  const threshold = h.threshold;
  if (typeof threshold !== "number" || !(threshold >= 0 && threshold <= 1))
    throw bad(`${where}.threshold`, "a number in [0, 1]", threshold);
  const cloudVariant = h.cloud_variant ?? null;
  if (cloudVariant !== null && (typeof cloudVariant !== "string" || !VARIANT.test(cloudVariant)))
    throw bad(`${where}.cloud_variant`, "a variant name or null", cloudVariant);
  return {
    mode,
    threshold,
    cloud_route: route,
    cloud_variant: cloudVariant as string | null,
    timeout_ms: int(h, "timeout_ms", where, 1, 600_000),
    max_retries: int(h, "max_retries", where, 0, 100),
  };
}

function parseCapture(raw: unknown, where: string): CapturePolicy | null {
  if (raw === null || raw === undefined) return null;
  try {
    return parseCapturePolicy(raw, where);
  } catch (err) {
    throw fail("protocol_error", `the manifest's ${(err as Error).message}`, err);
  }
}

function parseMonitor(raw: unknown, where: string): MonitorPolicy {
  if (raw === null || raw === undefined) return DEFAULT_MONITOR;
  const m = { ...DEFAULT_MONITOR, ...obj(raw, where) };
  const epsilon = m.epsilon_per_day ?? null;
  if (epsilon !== null && (typeof epsilon !== "number" || !(epsilon >= 0.001 && epsilon <= 100)))
    throw bad(`${where}.epsilon_per_day`, "null or a number in [0.001, 100]", epsilon);
  return {
    enabled: flag(m, "enabled", where),
    window_s: int(m, "window_s", where, 60, 86_400),
    max_rows: int(m, "max_rows", where, 1, 10 ** 9),
    epsilon_per_day: epsilon,
  };
}

/** Parse one entry of `models[]`; throws `protocol_error` naming the first bad field. */
export function parseEntry(raw: unknown, index: number): ModelEntry {
  const where = `models[${index}]`;
  const e = obj(raw, where);
  const name = text(e, "name", where, NAME);
  const capture = parseCapture(e.capture, `${where}.capture`);
  const hybrid = parseHybrid(e.hybrid, `${where}.hybrid`);
  const monitor = parseMonitor(e.monitor, `${where}.monitor`);
  const d = obj(e.download_policy, `${where}.download_policy`);
  const download = {
    wifi_only: flag(d, "wifi_only", `${where}.download_policy`),
    charging_only: flag(d, "charging_only", `${where}.download_policy`),
    max_cellular_bytes: int(d, "max_cellular_bytes", `${where}.download_policy`, 0, Number.MAX_SAFE_INTEGER),
  };
  const schema = e.schema === null || e.schema === undefined ? null : (obj(e.schema, `${where}.schema`) as unknown as ModelSchema);
  if (schema !== null && (!Array.isArray(schema.inputs) || !Array.isArray(schema.outputs)))
    throw bad(`${where}.schema`, "a model schema", schema);
  if (e.package === null || e.package === undefined) {
    return {
      name,
      capture,
      version: null,
      variant: null,
      format: null,
      precision: null,
      package: null,
      model_sha256: null,
      download_policy: download,
      hybrid,
      schema,
      monitor,
    };
  }
  const variant = text(e, "variant", where, VARIANT);
  if (variant === hybrid.cloud_variant) throw bad(`${where}.variant`, "a device variant (not the cloud variant)", variant);
  const format = e.format;
  if (typeof format !== "string" || !FORMATS.includes(format)) throw bad(`${where}.format`, FORMATS.join(", "), format);
  return {
    name,
    capture,
    version: int(e, "version", where, 1, Number.MAX_SAFE_INTEGER),
    variant,
    format,
    precision: typeof e.precision === "string" ? e.precision : null,
    package: parsePackage(e.package, `${where}.package`),
    model_sha256: text(e, "model_sha256", where, HEX64),
    download_policy: download,
    hybrid,
    schema,
    monitor,
  };
}
