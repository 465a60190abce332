/**
 * Keyrings: the signed list of an app's package-signing keys, and the one rule a device
 * applies to move its pin (docs/packages.md, "What a device trusts"; Python:
 * `pocketml.protect.accept_keyring` / `follow_keyrings`). Same checks, same order, same
 * codes: `keyring_invalid`, `keyring_stale`.
 */
import { concatBytes, fromBase64, toBase64, utf8 } from "./bytes.js";
import { signingKeyId, verifyEd25519 } from "./crypto.js";
import { fail } from "./errors.js";
import { canonicalJson } from "./json.js";
import type { TrustedKeys } from "./verify.js";

/** The JSON form a server publishes and an app ships. */
export interface KeyringJson {
  app_id: string;
  sequence: number;
  issued_at: string;
  active: string;
  keys: Record<string, string>;
  revoked: string[];
  signatures: Record<string, string>;
}

/** A parsed keyring (keys and signatures decoded; signatures not yet verified). */
export interface Keyring {
  json: KeyringJson;
  keys: Map<string, Uint8Array>;
  signatures: Map<string, Uint8Array>;
}

const CONTEXT = concatBytes([utf8.encode("pocketml-keyring-v1"), new Uint8Array([0])]);
const FIELDS = ["active", "app_id", "issued_at", "keys", "revoked", "sequence", "signatures"];
const KEY_ID = /^ed25519:[0-9a-f]{16}$/;
const APP_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_KEYS = 64;
const MAX_REVOKED = 1024;
const MAX_CHAIN = 16;

function invalid(message: string) {
  return fail("keyring_invalid", message);
}

function decode(text: unknown, size: number, what: string): Uint8Array {
  if (typeof text === "string" && text.length <= 4 * size) {
    const raw = fromBase64(text);
    if (raw !== null && raw.length === size) return raw;
  }
  throw invalid(`keyring ${what} must be base64 of ${size} bytes.`);
}

function checkIds(ids: Iterable<unknown>, what: string): void {
  for (const id of ids) {
    if (typeof id !== "string" || !KEY_ID.test(id))
      throw invalid(`keyring ${what} must use key ids like 'ed25519:<16 hex>'; got ${JSON.stringify(id)}.`);
  }
}

/** Parse the JSON form strictly (Python's `Keyring.from_dict`). */
export function parseKeyring(data: unknown): Keyring {
  const obj = data as Record<string, unknown>;
  if (typeof data !== "object" || data === null || Array.isArray(data) || Object.keys(obj).sort().join() !== FIELDS.join()) {
    throw invalid(`a keyring is an object with exactly the fields ${FIELDS.join(", ")}.`);
  }
  const { keys, signatures, revoked } = obj;
  const isMap = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isMap(keys) || !isMap(signatures)) throw invalid("keyring 'keys' and 'signatures' must be objects.");
  if (!Array.isArray(revoked) || !revoked.every((k) => typeof k === "string"))
    throw invalid("keyring 'revoked' must be a list of key ids.");
  const keyMap = keys as Record<string, unknown>;
  const sigMap = signatures as Record<string, unknown>;
  if (Object.keys(keyMap).length > MAX_KEYS || Object.keys(sigMap).length > MAX_KEYS || revoked.length > MAX_REVOKED) {
    throw invalid("a keyring holds at most 64 keys and signatures and 1024 revoked ids.");
  }
  const ring: Keyring = {
    json: obj as unknown as KeyringJson,
    keys: new Map(Object.entries(keyMap).map(([k, v]) => [k, decode(v, 32, `public key '${k}'`)])),
    signatures: new Map(Object.entries(sigMap).map(([k, v]) => [k, decode(v, 64, `signature by '${k}'`)])),
  };
  checkDocument(ring);
  return ring;
}

function checkDocument(ring: Keyring): void {
  const j = ring.json;
  if (typeof j.app_id !== "string" || !APP_ID.test(j.app_id)) throw invalid("keyring app_id must be an app id.");
  if (!Number.isInteger(j.sequence) || j.sequence < 1 || j.sequence > Number.MAX_SAFE_INTEGER) {
    throw invalid(`keyring sequence must be an int in [1, 2**63-1]; got ${JSON.stringify(j.sequence)}.`);
  }
  if (typeof j.issued_at !== "string" || j.issued_at.length < 1 || j.issued_at.length > 40)
    throw invalid("keyring issued_at must be ISO 8601 text.");
  checkIds(ring.keys.keys(), "keys");
  checkIds(ring.signatures.keys(), "signatures");
  checkIds(j.revoked, "revoked");
  for (const [id, key] of ring.keys) {
    if (signingKeyId(key) !== id) throw invalid(`keyring key ${id} does not match its bytes; the keyring was altered.`);
  }
  if (!ring.keys.has(j.active)) throw invalid(`keyring active key ${JSON.stringify(j.active)} is not one of its keys.`);
  if (j.revoked.some((id) => ring.keys.has(id)) || new Set(j.revoked).size !== j.revoked.length) {
    throw invalid("a keyring key cannot be revoked and trusted, or revoked twice.");
  }
}

/** What every signature covers: the context prefix + the canonical document. */
function signedBytes(ring: Keyring): Uint8Array {
  const j = ring.json;
  const keys = Object.fromEntries([...ring.keys].map(([k, v]) => [k, toBase64(v)]));
  const document = {
    app_id: j.app_id,
    sequence: j.sequence,
    issued_at: j.issued_at,
    active: j.active,
    keys,
    revoked: [...j.revoked].sort(),
  };
  return concatBytes([CONTEXT, utf8.encode(canonicalJson(document))]);
}

function validSigners(ring: Keyring): Set<string> {
  const data = signedBytes(ring);
  for (const [id, signature] of ring.signatures) {
    const key = ring.keys.get(id);
    if (key === undefined) throw invalid(`keyring ${ring.json.sequence} carries a signature by ${id}, which is not one of its keys.`);
    if (!verifyEd25519(key, data, signature)) {
      throw invalid(`the signature by ${id} on keyring ${ring.json.sequence} does not verify: the document was modified after signing.`);
    }
  }
  return new Set(ring.signatures.keys());
}

/** `{key_id: raw key}` to verify packages with (revoked ids never). */
export function trustedKeys(ring: Keyring): Record<string, Uint8Array> {
  return Object.fromEntries([...ring.keys].filter(([id]) => !ring.json.revoked.includes(id)));
}

/** A pin: a keyring, the bare `{key_id: base64}` an app shipped (sequence 0), or nothing. */
export type Pin = Keyring | TrustedKeys | null;

function isKeyring(pin: Pin): pin is Keyring {
  return pin !== null && "json" in pin && "signatures" in pin && pin.signatures instanceof Map;
}

/**
 * Decide whether a device moves from `pinned` to `offered` (Python's `accept_keyring`).
 *
 * @returns the keyring to pin.
 * @throws PocketMLError `keyring_stale` (not newer) or `keyring_invalid` (anything else).
 */
export function acceptKeyring(pinned: Pin, offered: unknown, appId: string): Keyring {
  const ring = parseKeyring(offered);
  if (ring.json.app_id !== appId) throw invalid(`the keyring is for app '${ring.json.app_id}', this device belongs to '${appId}'.`);
  if (isKeyring(pinned) && canonicalJson(ring.json) === canonicalJson(pinned.json)) return pinned;
  const signers = validSigners(ring);
  if (!signers.has(ring.json.active)) throw invalid(`keyring ${ring.json.sequence} is not signed by its active key ${ring.json.active}.`);
  if (pinned === null) return ring;
  const [sequence, trusted, revoked] = isKeyring(pinned)
    ? [pinned.json.sequence, trustedKeys(pinned), new Set(pinned.json.revoked)]
    : [0, pinned, new Set<string>()];
  if (ring.json.sequence <= sequence) {
    throw fail("keyring_stale", `keyring ${ring.json.sequence} is not newer than the pinned keyring ${sequence}.`);
  }
  const endorsed = [...signers].some((id) => {
    const mine = Object.hasOwn(trusted, id) ? trusted[id] : undefined;
    const theirs = ring.keys.get(id);
    return mine !== undefined && theirs !== undefined && toBase64(mine) === toBase64(theirs);
  });
  if (!endorsed) throw invalid(`keyring ${ring.json.sequence} is signed by no key this device trusts now and keeps; it is ignored.`);
  const back = [...revoked].filter((id) => ring.keys.has(id));
  if (back.length > 0) throw invalid(`keyring ${ring.json.sequence} trusts ${back.join(", ")} again, which an earlier keyring revoked.`);
  return ring;
}

/** Like `acceptKeyring`, walking `chain` (oldest first) when the pin cannot endorse `offered`. */
export function followKeyrings(pinned: Pin, offered: unknown, chain: readonly unknown[], appId: string): Keyring {
  try {
    return acceptKeyring(pinned, offered, appId);
  } catch (err) {
    if ((err as { code?: string }).code === "keyring_stale") throw err;
    if (pinned === null || !Array.isArray(chain) || chain.length === 0) throw err;
  }
  if (chain.length > MAX_CHAIN) throw invalid(`a keyring chain holds at most ${MAX_CHAIN} keyrings; got ${chain.length}.`);
  let current: Pin = pinned;
  for (const item of chain) {
    const step = parseKeyring(item);
    if (isKeyring(current) && step.json.sequence <= current.json.sequence) continue;
    current = acceptKeyring(current, item, appId);
  }
  return acceptKeyring(current, offered, appId);
}

/** Bare `{key_id: base64}` (what an app may ship instead of a keyring) to raw keys. */
export function decodeKeys(keys: Record<string, string>): Record<string, Uint8Array> {
  return Object.fromEntries(Object.entries(keys).map(([id, b64]) => [id, decode(b64, 32, `public key '${id}'`)]));
}
