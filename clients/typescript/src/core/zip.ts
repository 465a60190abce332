/**
 * The package zip: pocketml writes one canonical layout (every member stored, fixed header
 * fields, no extra fields or comments, nothing between or after the records) and the
 * verifier refuses any other, exactly as the Python SDK's `check_layout` does. A general zip
 * library would inflate and forgive; here every header byte is compared, so one changed byte
 * anywhere in a package is caught (by this layout check, a CRC, a hash or the signature).
 */
import { fail } from "./errors.js";

export interface ZipEntry {
  name: string;
  crc32: number;
  method: number;
  compressedSize: number;
  size: number;
  headerOffset: number;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const VERSION = 20;
const UNIX = 3;
const ATTRS = (0o100644 << 16) >>> 0;
const DOS_DATE = (1 << 5) | 1; // 1980-01-01
export const MAX_MEMBERS = 256;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The zip CRC-32 of `data` (what the central directory records per member). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) c = (CRC_TABLE[(c ^ byte) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function layoutError(detail: string) {
  return fail(
    "package_malformed",
    `the package zip layout is not the one pocketml writes: ${detail}. The file was modified or damaged: download it again.`,
  );
}

function unreadable(detail: string) {
  return fail(
    "package_malformed",
    `not a readable package (zip) file: ${detail}. Download it again; a partial or corrupted download looks like this.`,
  );
}

/** Read the central directory (leniently, like a zip library); `checkLayout` is strict. */
export function readEntries(data: Uint8Array): ZipEntry[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let end = -1;
  for (let i = data.length - 22; i >= Math.max(0, data.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === EOCD) {
      end = i;
      break;
    }
  }
  if (end < 0) throw unreadable("no end of central directory record");
  const count = view.getUint16(end + 10, true);
  const cdOffset = view.getUint32(end + 16, true);
  const entries: ZipEntry[] = [];
  let p = cdOffset;
  for (let n = 0; n < count; n++) {
    if (p + 46 > data.length || view.getUint32(p, true) !== CENTRAL) {
      throw unreadable("a bad central directory entry");
    }
    const nameLength = view.getUint16(p + 28, true);
    const extra = view.getUint16(p + 30, true);
    const comment = view.getUint16(p + 32, true);
    if (p + 46 + nameLength > data.length) throw unreadable("a cut central directory");
    let name = "";
    for (const byte of data.subarray(p + 46, p + 46 + nameLength)) name += String.fromCharCode(byte);
    entries.push({
      name,
      method: view.getUint16(p + 10, true),
      crc32: view.getUint32(p + 16, true),
      compressedSize: view.getUint32(p + 20, true),
      size: view.getUint32(p + 24, true),
      headerOffset: view.getUint32(p + 42, true),
    });
    p += 46 + nameLength + extra + comment;
  }
  return entries;
}

function centralRecord(e: ZipEntry): Uint8Array {
  const out = new Uint8Array(46 + e.name.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, CENTRAL, true);
  v.setUint8(4, VERSION);
  v.setUint8(5, UNIX);
  v.setUint8(6, VERSION);
  v.setUint8(7, 0);
  v.setUint16(8, 0, true);
  v.setUint16(10, 0, true);
  v.setUint16(12, 0, true);
  v.setUint16(14, DOS_DATE, true);
  v.setUint32(16, e.crc32, true);
  v.setUint32(20, e.compressedSize, true);
  v.setUint32(24, e.size, true);
  v.setUint16(28, e.name.length, true);
  v.setUint32(38, ATTRS, true);
  v.setUint32(42, e.headerOffset, true);
  for (let i = 0; i < e.name.length; i++) out[46 + i] = e.name.charCodeAt(i);
  return out;
}

function localHeader(e: ZipEntry): Uint8Array {
  const out = new Uint8Array(30 + e.name.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, LOCAL, true);
  v.setUint8(4, VERSION);
  v.setUint16(8, 0, true);
  v.setUint16(10, 0, true);
  v.setUint16(12, DOS_DATE, true);
  v.setUint32(14, e.crc32, true);
  v.setUint32(18, e.compressedSize, true);
  v.setUint32(22, e.size, true);
  v.setUint16(26, e.name.length, true);
  for (let i = 0; i < e.name.length; i++) out[30 + i] = e.name.charCodeAt(i);
  return out;
}

function same(data: Uint8Array, offset: number, expected: Uint8Array): boolean {
  if (offset < 0 || offset + expected.length > data.length) return false;
  for (let i = 0; i < expected.length; i++) if (data[offset + i] !== expected[i]) return false;
  return true;
}

/** Require the exact canonical layout: records that tile the file, headers as written. */
export function checkLayout(data: Uint8Array, entries: readonly ZipEntry[]): void {
  if (data.length < 22) throw layoutError("the file is shorter than a zip end record");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.length - 22;
  const cdSize = view.getUint32(end + 12, true);
  const cdOffset = view.getUint32(end + 16, true);
  const endOk =
    view.getUint32(end, true) === EOCD &&
    view.getUint16(end + 4, true) === 0 &&
    view.getUint16(end + 6, true) === 0 &&
    view.getUint16(end + 8, true) === entries.length &&
    view.getUint16(end + 10, true) === entries.length &&
    view.getUint16(end + 20, true) === 0 &&
    cdOffset + cdSize === end;
  if (!endOk) throw layoutError("the file does not end with its zip directory (bytes appended?)");
  let p = cdOffset;
  for (const e of entries) {
    if (e.compressedSize !== e.size || e.method !== 0) {
      throw layoutError(`member '${e.name}' is not stored uncompressed`);
    }
    const record = centralRecord(e);
    if (!same(data, p, record)) throw layoutError("the central directory is not the canonical one");
    p += record.length;
  }
  if (p !== end) throw layoutError("the central directory is not the canonical one");
  let expected = 0;
  for (const e of [...entries].sort((a, b) => a.headerOffset - b.headerOffset)) {
    if (e.headerOffset !== expected) {
      throw layoutError(`member '${e.name}' is not where the previous one ends`);
    }
    if (!same(data, e.headerOffset, localHeader(e))) {
      throw layoutError(`the local header of '${e.name}' differs from its directory`);
    }
    expected += 30 + e.name.length + e.compressedSize;
  }
  if (expected !== cdOffset) throw layoutError("there are bytes between the last member and the directory");
}

/** A stored member's bytes (a view, no copy) after the layout check passed. */
export function memberBytes(data: Uint8Array, e: ZipEntry): Uint8Array {
  const start = e.headerOffset + 30 + e.name.length;
  return data.subarray(start, start + e.size);
}
