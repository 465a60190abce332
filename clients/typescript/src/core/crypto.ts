/**
 * The three primitives a package needs, from audited libraries (noble), never hand-written:
 * SHA-256 (@noble/hashes), Ed25519 verification (@noble/ed25519, RFC 8032 strict mode like
 * the Python SDK's OpenSSL, not ZIP-215) and AES-256-GCM (@noble/ciphers). They are pure
 * JavaScript, so the same code runs in Node, browsers and React Native (no WebCrypto there).
 */
import { gcm } from "@noble/ciphers/aes.js";
import * as ed from "@noble/ed25519";
import { sha256 as nobleSha256, sha512 } from "@noble/hashes/sha2.js";
import { toHex } from "./bytes.js";

ed.hashes.sha512 = sha512;

export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

export function sha256Hex(data: Uint8Array): string {
  return toHex(nobleSha256(data));
}

/** An incremental SHA-256 (for streamed downloads). */
export function sha256Stream(): { update(chunk: Uint8Array): void; hex(): string } {
  const hasher = nobleSha256.create();
  return { update: (chunk) => void hasher.update(chunk), hex: () => toHex(hasher.digest()) };
}

/** `"ed25519:" + the first 16 hex digits of sha256(raw public key)` (docs/packages.md). */
export function signingKeyId(publicKey: Uint8Array): string {
  return `ed25519:${sha256Hex(publicKey).slice(0, 16)}`;
}

/** True when `signature` is a valid Ed25519 signature of `message` by `publicKey`. */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false; // a public key that is not a curve point
  }
}

/** AES-256-GCM open of `ciphertext || tag`; null when the tag does not verify. */
export function openAesGcm(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  try {
    return gcm(key, nonce).decrypt(sealed);
  } catch {
    return null;
  }
}
