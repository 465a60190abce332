/** The TypeScript core against the package, keyring and normalization vectors (offline). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fromBase64 } from "../src/core/bytes.js";
import { sha256Hex } from "../src/core/crypto.js";
import { PocketMLError } from "../src/core/errors.js";
import { canonicalize } from "../src/core/json.js";
import { followKeyrings, type Pin, parseKeyring, trustedKeys } from "../src/core/keyring.js";
import { normalize } from "../src/core/schema.js";
import { extractModel, verifyPackage } from "../src/core/verify.js";
import { vectorFile, vectorJson } from "./vectors.js";

interface PackageVector {
  name: string;
  file: string;
  sha256: string;
  app_id: string;
  trusted_keys: Record<string, string>;
  content_key: string | null;
  expect: { ok: boolean; error?: string; signing_key_id?: string; model_sha256?: string; manifest?: Record<string, unknown> };
}

function outcome(run: () => Record<string, unknown>): Record<string, unknown> {
  try {
    return run();
  } catch (err) {
    if (err instanceof PocketMLError) return { ok: false, error: err.code };
    throw err;
  }
}

const b64 = (text: string) => fromBase64(text) as Uint8Array;

describe("package vectors", () => {
  for (const v of vectorJson<{ vectors: PackageVector[] }>("packages.json").vectors) {
    it(v.name, () => {
      const data = vectorFile(v.file);
      assert.equal(sha256Hex(data), v.sha256);
      const trusted = Object.fromEntries(Object.entries(v.trusted_keys).map(([k, x]) => [k, b64(x)]));
      const got = outcome(() => {
        const pkg = verifyPackage(data, trusted, v.app_id);
        const model = extractModel(pkg, v.content_key === null ? null : b64(v.content_key));
        const wanted = Object.keys(v.expect.manifest ?? {});
        const manifest = pkg.manifest as unknown as Record<string, unknown>;
        return {
          ok: true,
          signing_key_id: pkg.signingKeyId,
          model_sha256: sha256Hex(model),
          manifest: Object.fromEntries(wanted.map((k) => [k, manifest[k]])),
        };
      });
      assert.deepEqual(got, v.expect);
    });
  }
});

interface KeyringVector {
  name: string;
  app_id: string;
  pinned: null | Record<string, unknown>;
  offered: unknown;
  chain: unknown[];
  expect: Record<string, unknown>;
}

describe("keyring vectors", () => {
  for (const v of vectorJson<{ vectors: KeyringVector[] }>("keyrings.json").vectors) {
    it(v.name, () => {
      const got = outcome(() => {
        let pin: Pin = null;
        if (v.pinned !== null) {
          pin =
            "sequence" in v.pinned
              ? parseKeyring(v.pinned)
              : Object.fromEntries(Object.entries(v.pinned as Record<string, string>).map(([k, x]) => [k, b64(x)]));
        }
        const ring = followKeyrings(pin, v.offered, v.chain, v.app_id);
        return { ok: true, sequence: ring.json.sequence, trusted_keys: Object.keys(trustedKeys(ring)).sort() };
      });
      assert.deepEqual(got, v.expect);
    });
  }
});

interface Predictions {
  schema: Parameters<typeof normalize>[0];
  tolerance: number;
  cases: { raw: number[]; normalized: number[] }[];
}

describe("schema normalization vectors", () => {
  const p = vectorJson<Predictions>("predictions.json");
  for (const [i, c] of p.cases.entries()) {
    it(`case ${i}: ${JSON.stringify(c.raw)}`, () => {
      const got = normalize(p.schema, Float32Array.from(c.raw));
      for (const [j, want] of c.normalized.entries()) assert.ok(Math.abs((got[j] as number) - want) <= p.tolerance, `${got[j]} != ${want}`);
    });
  }
});

describe("canonical JSON vectors", () => {
  for (const [i, v] of vectorJson<{ vectors: { json: string; canonical: string }[] }>("canonical.json").vectors.entries()) {
    it(`case ${i}`, () => assert.equal(canonicalize(v.json), v.canonical));
  }
});
