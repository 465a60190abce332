/**
 * The check-in a scripted server answers with (the tests that cannot use the real server: faults,
 * adapters, the browser page, the predict benchmark): the conformance model's entry, built from a
 * package vector. Pure (no Node imports), so the browser page bundles it too.
 */

/** A package vector of conformance/packages.json (the fields an entry needs). */
export interface PackageVector {
  file: string;
  sha256: string;
  expect: Record<string, string>;
}

export interface EntryOptions {
  download_policy?: Partial<{ wifi_only: boolean; charging_only: boolean; max_cellular_bytes: number }>;
  hybrid?: Record<string, unknown>;
  /** Other top-level fields of the entry (a capture or monitor policy). */
  extra?: Record<string, unknown>;
}

/** The `models[]` entry of the conformance model served from `pkg` (`size` bytes). */
export function conformanceEntry(pkg: PackageVector, size: number, schema: unknown, options: EntryOptions = {}) {
  return {
    name: "conformance",
    version: 1,
    variant: "logreg-onnx-fp32",
    format: "onnx",
    precision: "fp32",
    model_sha256: pkg.expect.model_sha256,
    package: {
      id: pkg.sha256,
      url: `/v1/packages/${pkg.sha256}`,
      size,
      sha256: pkg.sha256,
      signing_key_id: pkg.expect.signing_key_id,
      content_key_id: null,
    },
    download_policy: { wifi_only: false, charging_only: false, max_cellular_bytes: 0, ...options.download_policy },
    hybrid: {
      mode: "local",
      threshold: 0.5,
      cloud_route: "/v1/models/conformance/predict",
      cloud_variant: null,
      timeout_ms: 100,
      max_retries: 0,
      ...options.hybrid,
    },
    schema,
    ...options.extra,
  };
}

/** A check-in answer's body with these entries. */
export function checkinBody(keyring: unknown, models: unknown[]): string {
  return JSON.stringify({ app_id: "conformance-app", checkin_interval_s: 3600, keyring, keyring_chain: [], models });
}
