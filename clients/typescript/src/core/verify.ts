/**
 * Verifying a package, in the Python SDK's order (docs/packages.md, "How a device verifies a
 * package"), each failure with the same error code:
 *
 * 1. structure - a readable zip of at most 256 members, safe unique names, manifest.json
 *    (`package_malformed`) and manifest.sig (`package_unsigned`), the canonical layout;
 * 2. signature - the manifest's key id is trusted (`package_untrusted_key`) and its Ed25519
 *    signature over the exact manifest bytes holds (`package_signature_invalid`);
 * 3. manifest  - canonical JSON, known format, every field well-formed (`package_malformed`);
 * 4. app       - the manifest names the expected app (`package_wrong_app`);
 * 5. members   - exactly the listed members, each with its size and sha256
 *    (`package_missing_member`, `package_unexpected_member`, `package_hash_mismatch`).
 *
 * Then `extractModel` decrypts (AES-256-GCM, `decryption_failed`) and checks the plaintext
 * against `model_sha256`.
 */
import { fromBase64, utf8 } from "./bytes.js";
import { openAesGcm, sha256Hex, signingKeyId, verifyEd25519 } from "./crypto.js";
import { fail } from "./errors.js";
import { parseStrict } from "./json.js";
import { checkLayout, crc32, MAX_MEMBERS, memberBytes, readEntries, type ZipEntry } from "./zip.js";

export const MANIFEST = "manifest.json";
export const SIGNATURE = "manifest.sig";
const MAX_MANIFEST_BYTES = 1 << 20;
const MAX_SIGNATURE_BYTES = 1024;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX64 = /^[0-9a-f]{64}$/;
/** model_format -> the extensions of its model member (pocketml.protocol.FORMATS). */
export const MODEL_EXTENSIONS: Record<string, readonly string[]> = {
  onnx: ["onnx"],
  ort: ["ort"],
  tflite: ["tflite"],
  coreml: ["mlmodel", "mlpackage.zip"],
};

export interface MemberEntry {
  sha256: string;
  size: number;
}

export interface Manifest {
  format: "pocketml-package";
  format_version: 1;
  app_id: string;
  model: string;
  version: number;
  variant: string;
  model_format: string;
  precision: string;
  created_at: string;
  signing_key_id: string;
  members: Record<string, MemberEntry>;
  model_member: string;
  model_sha256: string;
  model_size: number;
  encryption: null | { algorithm: "AES-256-GCM"; key_id: string; nonce: string };
  extra: Record<string, unknown>;
}

/** A package that passed `verifyPackage`: its signed manifest and where its members are. */
export interface VerifiedPackage {
  manifest: Manifest;
  signingKeyId: string;
  readonly data: Uint8Array;
  readonly entries: ReadonlyMap<string, ZipEntry>;
}

/** Trusted keys: `{key_id: raw 32-byte Ed25519 public key}` (from the pinned keyring). */
export type TrustedKeys = Readonly<Record<string, Uint8Array>>;

const FIELDS: Record<string, (v: unknown) => boolean> = {
  format: isString,
  format_version: Number.isInteger,
  app_id: isString,
  model: isString,
  version: Number.isInteger,
  variant: isString,
  model_format: isString,
  precision: isString,
  created_at: isString,
  signing_key_id: isString,
  members: isObject,
  model_member: isString,
  model_sha256: isString,
  model_size: Number.isInteger,
  encryption: (v) => v === null || isObject(v),
  extra: isObject,
};

function isString(v: unknown): v is string {
  return typeof v === "string";
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isSafeName(name: string): boolean {
  return SAFE_NAME.test(name) && !name.includes("..");
}

function shown(names: readonly string[]): string {
  return JSON.stringify(names.slice(0, 10)) + (names.length > 10 ? ` and ${names.length - 10} more` : "");
}

function checkStructure(data: Uint8Array): Map<string, ZipEntry> {
  const entries = readEntries(data);
  if (entries.length > MAX_MEMBERS) {
    throw fail("package_malformed", `package holds ${entries.length} members; a pocketml package has at most ${MAX_MEMBERS}.`);
  }
  const names = entries.map((e) => e.name);
  const unsafe = names.filter((n) => !isSafeName(n));
  if (unsafe.length > 0) {
    throw fail(
      "package_malformed",
      `package holds unsafe member names ${shown(unsafe)} (absolute paths, '..', folders or unusual characters): do not use it.`,
    );
  }
  if (new Set(names).size !== names.length) throw fail("package_malformed", `package holds a member name twice: ${shown(names)}.`);
  if (!names.includes(MANIFEST)) throw fail("package_malformed", `package has no ${MANIFEST}; it is not a pocketml package.`);
  if (!names.includes(SIGNATURE)) {
    throw fail("package_unsigned", `package has no ${SIGNATURE}: it is unsigned, and unsigned packages are never trusted.`);
  }
  checkLayout(data, entries);
  return new Map(entries.map((e) => [e.name, e]));
}

/** A small member's bytes, its CRC-32 checked (a corrupt one is a malformed package). */
function readSmall(data: Uint8Array, entry: ZipEntry, limit: number): Uint8Array {
  if (entry.size > limit)
    throw fail("package_malformed", `package member '${entry.name}' is ${entry.size} bytes; at most ${limit} are allowed.`);
  const bytes = memberBytes(data, entry);
  if (crc32(bytes) !== entry.crc32) {
    throw fail("package_malformed", `package member '${entry.name}' is corrupt (CRC-32 mismatch); download it again.`);
  }
  return bytes;
}

function peekKeyId(manifestBytes: Uint8Array): string | null {
  try {
    const data = JSON.parse(utf8.decode(manifestBytes)) as unknown;
    const keyId = isObject(data) ? data.signing_key_id : undefined;
    return typeof keyId === "string" ? keyId : null;
  } catch {
    return null;
  }
}

function checkSignature(manifestBytes: Uint8Array, signature: Uint8Array, trusted: TrustedKeys): string {
  const keyId = peekKeyId(manifestBytes);
  if (keyId === null) {
    for (const key of Object.values(trusted)) {
      if (verifyEd25519(key, manifestBytes, signature)) {
        throw fail("package_malformed", "the signed manifest has no signing_key_id field.");
      }
    }
    throw fail(
      "package_signature_invalid",
      "manifest.json is not a manifest any trusted key signed. The package was modified: do not use it.",
    );
  }
  const key = Object.hasOwn(trusted, keyId) ? trusted[keyId] : undefined;
  if (key === undefined) {
    throw fail(
      "package_untrusted_key",
      `package is signed by key '${keyId}', which is not trusted (trusted: ${shown(Object.keys(trusted).sort())}).`,
    );
  }
  if (signingKeyId(key) !== keyId) {
    throw fail("invalid_input", `trusted keys map '${keyId}' to a public key whose id is '${signingKeyId(key)}'.`);
  }
  if (!verifyEd25519(key, manifestBytes, signature)) {
    throw fail("package_signature_invalid", "the manifest signature does not verify. The package was modified: do not use it.");
  }
  return keyId;
}

function bad(detail: string) {
  return fail("package_malformed", `manifest ${detail}`);
}

/** Parse signed manifest bytes and check every field, as `pocketml.protect.check_manifest`. */
export function checkManifest(manifestBytes: Uint8Array): Manifest {
  let parsed: { value: unknown; canonical: boolean };
  try {
    parsed = parseStrict(utf8.decode(manifestBytes));
  } catch (err) {
    throw bad(`is not valid JSON: ${(err as Error).message}`);
  }
  const m = parsed.value;
  if (!isObject(m)) throw bad("must hold a JSON object");
  if (m.format !== "pocketml-package") throw bad(`format must be 'pocketml-package'; got ${JSON.stringify(m.format)}`);
  if (m.format_version !== 1) throw bad(`format_version must be 1; got ${JSON.stringify(m.format_version)}`);
  if (!parsed.canonical) throw bad("is not in canonical form (sorted keys, no spaces, ASCII)");
  for (const [name, ok] of Object.entries(FIELDS)) {
    if (!(name in m) || !ok(m[name])) throw bad(`field '${name}' is missing or mistyped`);
  }
  const unknown = Object.keys(m).filter((k) => !(k in FIELDS));
  if (unknown.length > 0) throw bad(`has unknown fields ${shown(unknown.sort())}; put free data under 'extra'`);
  const extensions = MODEL_EXTENSIONS[m.model_format as string];
  if (extensions === undefined) throw bad(`model_format must be one of onnx, ort, tflite, coreml; got '${m.model_format}'`);
  if (!HEX64.test(m.model_sha256 as string) || (m.model_size as number) < 0) {
    throw bad("model_sha256/model_size are not a sha256 and a size");
  }
  const members = m.members as Record<string, unknown>;
  for (const [name, entry] of Object.entries(members)) {
    if (!isSafeName(name) || name === MANIFEST || name === SIGNATURE) throw bad(`lists an unsafe or reserved member name '${name}'`);
    const ok =
      isObject(entry) &&
      Object.keys(entry).sort().join() === "sha256,size" &&
      typeof entry.sha256 === "string" &&
      HEX64.test(entry.sha256) &&
      Number.isInteger(entry.size) &&
      (entry.size as number) >= 0;
    if (!ok) throw bad(`entry of member '${name}' must be {"sha256": <64 hex>, "size": <int >= 0>}`);
  }
  const modelMember = m.model_member as string;
  if (!(modelMember in members)) throw bad(`model_member '${modelMember}' is not among its members`);
  const suffix = m.encryption === null ? "" : ".enc";
  if (!extensions.map((ext) => `model.${ext}${suffix}`).includes(modelMember)) {
    throw bad(`model_member '${modelMember}' does not fit its format and encryption`);
  }
  const memberSize = (members[modelMember] as MemberEntry).size;
  const enc = m.encryption as Record<string, unknown> | null;
  if (enc === null) {
    if (memberSize !== m.model_size) throw bad("model_size differs from the model member's size");
  } else {
    const ok =
      Object.keys(enc).sort().join() === "algorithm,key_id,nonce" &&
      enc.algorithm === "AES-256-GCM" &&
      typeof enc.key_id === "string" &&
      enc.key_id.length > 0 &&
      typeof enc.nonce === "string";
    if (!ok) throw bad('encryption must be {"algorithm": "AES-256-GCM", "key_id": <str>, "nonce": <base64 of 12 bytes>}');
    const nonce = fromBase64(enc.nonce as string);
    if (nonce === null) throw bad("encryption nonce is not base64");
    if (nonce.length !== 12) throw bad(`encryption nonce must be 12 bytes; got ${nonce.length}`);
    if (memberSize !== (m.model_size as number) + 16) throw bad("an encrypted model member must be model_size + 16 bytes");
  }
  return m as unknown as Manifest;
}

function hashMember(data: Uint8Array, entry: ZipEntry, expected: MemberEntry): void {
  if (entry.size !== expected.size) {
    throw fail(
      "package_hash_mismatch",
      `package member '${entry.name}' is ${entry.size} bytes; the signed manifest says ${expected.size}.`,
    );
  }
  const digest = sha256Hex(memberBytes(data, entry));
  if (digest !== expected.sha256) {
    throw fail(
      "package_hash_mismatch",
      `package member '${entry.name}' has sha256 ${digest}; the signed manifest says ${expected.sha256}.`,
    );
  }
}

/**
 * Check a package's structure, signature, app and every member hash.
 *
 * @param data the whole package file.
 * @param trusted `{key_id: raw public key}` of the pinned keyring (revoked keys left out).
 * @param appId the app this package must belong to.
 * @throws PocketMLError with the code of the first failing check.
 */
export function verifyPackage(data: Uint8Array, trusted: TrustedKeys, appId: string): VerifiedPackage {
  const entries = checkStructure(data);
  const manifestBytes = readSmall(data, entries.get(MANIFEST) as ZipEntry, MAX_MANIFEST_BYTES);
  const signature = readSmall(data, entries.get(SIGNATURE) as ZipEntry, MAX_SIGNATURE_BYTES);
  const keyId = checkSignature(manifestBytes, signature, trusted);
  const manifest = checkManifest(manifestBytes);
  if (manifest.app_id !== appId) {
    throw fail("package_wrong_app", `this package is for app '${manifest.app_id}', not '${appId}': do not use it.`);
  }
  const present = [...entries.keys()].filter((n) => n !== MANIFEST && n !== SIGNATURE);
  const listed = Object.keys(manifest.members);
  const missing = listed.filter((n) => !entries.has(n)).sort();
  if (missing.length > 0) throw fail("package_missing_member", `package lacks member(s) ${shown(missing)} that its signed manifest lists.`);
  const unexpected = present.filter((n) => !(n in manifest.members)).sort();
  if (unexpected.length > 0) {
    throw fail("package_unexpected_member", `package holds member(s) ${shown(unexpected)} that its signed manifest does not list.`);
  }
  for (const name of listed.sort()) hashMember(data, entries.get(name) as ZipEntry, manifest.members[name] as MemberEntry);
  return { manifest, signingKeyId: keyId, data, entries };
}

/**
 * The plaintext model of a verified package (decrypted with `contentKey` when encrypted),
 * checked against the signed `model_sha256` and `model_size`.
 *
 * @throws PocketMLError `content_key_required`, `invalid_input` (key not 32 bytes),
 *   `decryption_failed`, `package_hash_mismatch`.
 */
export function extractModel(pkg: VerifiedPackage, contentKey?: Uint8Array | null): Uint8Array {
  const m = pkg.manifest;
  const entry = pkg.entries.get(m.model_member) as ZipEntry;
  const member = memberBytes(pkg.data, entry);
  let plain: Uint8Array = member;
  if (m.encryption !== null) {
    if (contentKey === undefined || contentKey === null) {
      throw fail(
        "content_key_required",
        `the model is encrypted with content key '${m.encryption.key_id}'; fetch it from GET /v1/keys/${m.encryption.key_id}.`,
      );
    }
    if (contentKey.length !== 32) throw fail("invalid_input", `a content key is 32 bytes (AES-256); got ${contentKey.length}.`);
    const opened = openAesGcm(contentKey, fromBase64(m.encryption.nonce) as Uint8Array, member);
    if (opened === null) {
      throw fail("decryption_failed", "AES-256-GCM refused the model: wrong content key, or the ciphertext or tag was modified.");
    }
    plain = opened;
  }
  const digest = sha256Hex(plain);
  if (digest !== m.model_sha256 || plain.length !== m.model_size) {
    throw fail("package_hash_mismatch", `the extracted model has sha256 ${digest}; the signed manifest says ${m.model_sha256}.`);
  }
  return plain;
}

/** A verified member's bytes (schema.json, card.md, profile.json). */
export function readMember(pkg: VerifiedPackage, name: string): Uint8Array {
  const entry = pkg.entries.get(name);
  if (entry === undefined || !(name in pkg.manifest.members)) throw fail("not_found", `package has no member '${name}'.`);
  return memberBytes(pkg.data, entry);
}
