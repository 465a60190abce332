/**
 * The React Native adapters (src/react-native). React Native cannot run here (no Android or
 * iOS), so `expoStorage` runs over `FakeExpoFileSystem`: a stand-in for expo-file-system backed
 * by node:fs that implements exactly the subset the adapter types (`File`, `Directory`, `Paths`)
 * with the semantics expo documents for SDK 55+: `write` creates or replaces, `{ append }` adds,
 * `move` refuses an existing destination unless `{ overwrite }`, which deletes it first
 * (expo/expo#42979; so do iOS and Android in expo-file-system 58), `delete` throws on nothing. Then a whole device over it: a scripted server
 * (a download cut at 50 % and resumed through `append`), onnxruntime-node behind a path-loading
 * runtime given the `file://` URI as onnxruntime-react-native is, and a restart that predicts
 * from the files without a download. Last, the NetInfo / expo-battery mapping.
 */
import assert from "node:assert/strict";
import {
  appendFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as ortNode from "onnxruntime-node";
import {
  type BatteryLike,
  Device,
  type DeviceOptions,
  type ExpoFile,
  type ExpoFileSystem,
  expoStorage,
  type Fetch,
  isKind,
  type NetInfoLike,
  type OrtLike,
  ortRuntime,
  reactNativeConditions,
} from "../src/react-native/index.js";
import { checkinBody, conformanceEntry } from "./scripted.js";
import { vectorFile, vectorJson } from "./vectors.js";

// -- the stand-in for expo-file-system -------------------------------------------------------------

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * expo-file-system over node:fs. `appendOption: false` is expo-file-system 19 (Expo SDK 54),
 * whose `write` has no `append` and replaces the file; `truncates: false` is a `write` that lays
 * the new bytes over the old ones without cutting the file (Android, expo/expo#44957);
 * `afterRemove` runs between the two steps of an overwriting move (where the app can be killed).
 */
/** A file of the stand-in (what its `move` takes). */
interface FakeFile extends ExpoFile<FakeFile> {}

class FakeExpoFileSystem implements ExpoFileSystem<FakeFile> {
  appendOption = true;
  truncates = true;
  afterRemove: ((path: string) => void) | null = null;
  readonly File: new (
    uri: string,
  ) => FakeFile;
  readonly Directory: ExpoFileSystem["Directory"];
  readonly Paths: ExpoFileSystem["Paths"];

  constructor(document: string) {
    const fs = this;
    this.File = class implements FakeFile {
      constructor(public uri: string) {}
      private get path(): string {
        return fileURLToPath(this.uri);
      }
      get exists(): boolean {
        return isFile(this.path);
      }
      get size(): number {
        return this.exists ? statSync(this.path).size : 0;
      }
      async bytes(): Promise<Uint8Array> {
        return new Uint8Array(readFileSync(this.path));
      }
      async write(content: Uint8Array, options: { append?: boolean } = {}): Promise<void> {
        if (!isDirectory(dirname(this.path))) throw new Error(`parent folder missing: ${this.uri}`);
        if (options.append === true && fs.appendOption) appendFileSync(this.path, content);
        else if (fs.truncates || !this.exists) writeFileSync(this.path, content);
        else writeFileSync(this.path, content, { flag: "r+" }); // over the old bytes, which stay past the new end
      }
      async move(destination: FakeFile, options: { overwrite?: boolean } = {}): Promise<void> {
        if (!this.exists) throw new Error(`no such file: ${this.uri}`);
        const target = fileURLToPath(destination.uri);
        if (isFile(target)) {
          if (options.overwrite !== true) throw new Error(`destination already exists: ${destination.uri}`);
          unlinkSync(target);
          fs.afterRemove?.(target);
        }
        renameSync(this.path, target);
        this.uri = destination.uri;
      }
      delete(): void {
        if (!this.exists) throw new Error(`no such file: ${this.uri}`);
        unlinkSync(this.path);
      }
    };
    this.Directory = class {
      constructor(readonly uri: string) {}
      get exists(): boolean {
        return isDirectory(fileURLToPath(this.uri));
      }
      create(options: { intermediates?: boolean; idempotent?: boolean } = {}): void {
        if (this.exists && options.idempotent === true) return;
        mkdirSync(fileURLToPath(this.uri), { recursive: options.intermediates === true });
      }
      delete(): void {
        if (!this.exists) throw new Error(`no such folder: ${this.uri}`);
        rmSync(fileURLToPath(this.uri), { recursive: true });
      }
    };
    this.Paths = {
      document: { uri: `${pathToFileURL(document).href}/` },
      get availableDiskSpace() {
        const s = statfsSync(document);
        return s.bavail * s.bsize;
      },
    };
  }
}

let tmp: string;
let n = 0;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "pocketml-rn-"));
});
after(async () => rm(tmp, { recursive: true, force: true }));

/** A fresh document directory and its stand-in module. */
function sandbox(): { fs: FakeExpoFileSystem; folder: string } {
  const document = join(tmp, `app${++n}`);
  mkdirSync(document);
  return { fs: new FakeExpoFileSystem(document), folder: join(document, "pocketml") };
}

/** Every file under `folder`, relative, sorted. */
function listing(folder: string): string[] {
  return (readdirSync(folder, { recursive: true }) as string[])
    .filter((p) => isFile(join(folder, p)))
    .map((p) => p.split(sep).join("/"))
    .sort();
}

const bytes = (...values: number[]) => new Uint8Array(values);

// -- the Storage contract --------------------------------------------------------------------------

describe("expoStorage: the Storage contract over expo-file-system", () => {
  it("write, read, append, size, overwrite, remove of a folder (the web storage's checks)", async () => {
    const { fs } = sandbox();
    const storage = expoStorage(fs);
    assert.equal(await storage.read("a/x"), null);
    assert.equal(await storage.size("a/x"), null);
    await storage.write("a/x", bytes(1, 2));
    await storage.append("a/x", bytes(3));
    await storage.append("a/y", bytes(4)); // created when missing
    await storage.write("ab", bytes(5));
    assert.deepEqual([await storage.read("a/x"), await storage.size("a/x"), await storage.size("a/y")], [bytes(1, 2, 3), 3, 1]);
    await storage.write("a/x", bytes(9)); // a shorter file replaces a longer one
    assert.deepEqual(await storage.read("a/x"), bytes(9));
    await storage.remove("a");
    assert.deepEqual([await storage.read("a/x"), await storage.read("a/y"), await storage.read("ab")], [null, null, bytes(5)]);
    await storage.remove("a"); // nothing there: no error
    await storage.remove("ab");
    assert.equal(await storage.read("ab"), null);
    assert.ok((await storage.freeBytes()) > 0);
  });

  it("keeps its files in <document>/pocketml/ by default, or in the root given", async () => {
    const { fs, folder } = sandbox();
    await expoStorage(fs).write("packages/p/schema.json", bytes(1));
    assert.deepEqual(listing(folder), ["packages/p/schema.json"]);
    const other = join(tmp, `elsewhere${++n}`);
    await expoStorage(fs, pathToFileURL(other).href).write("device.json", bytes(2));
    assert.deepEqual(listing(other), ["device.json"]);
    assert.throws(
      () => expoStorage(fs, other),
      (err) => isKind(err, "invalid_input"),
    ); // a path, not a URI
  });

  it("an atomic write leaves no temporary file, and concurrent writes to one path end with the last", async () => {
    const { fs, folder } = sandbox();
    const storage = expoStorage(fs);
    await Promise.all([
      storage.write("state.json", bytes(1, 1, 1)),
      storage.write("state.json", bytes(2)),
      storage.append("log", bytes(7)),
    ]);
    assert.deepEqual(await storage.read("state.json"), bytes(2));
    assert.deepEqual(listing(folder), ["log", "state.json"]);
  });

  it("a kill between an overwriting move's delete and rename loses nothing: the next open finds the new bytes", async () => {
    const { fs, folder } = sandbox();
    await expoStorage(fs).write("trust.json", bytes(1));
    fs.afterRemove = (path) => {
      if (path.endsWith(`${sep}trust.json`)) throw new Error("killed");
    };
    await assert.rejects(expoStorage(fs).write("trust.json", bytes(2, 2)), /killed/);
    fs.afterRemove = null;
    assert.equal(isFile(join(folder, "trust.json")), false); // the window the adapter covers
    const reopened = expoStorage(fs);
    assert.deepEqual([await reopened.size("trust.json"), await reopened.read("trust.json")], [2, bytes(2, 2)]);
    assert.deepEqual(listing(folder), ["trust.json"]);
  });

  it("a write killed before its rename leaves the old bytes, and a longer leftover temp file does not leak into the next write", async () => {
    const { fs, folder } = sandbox();
    fs.truncates = false;
    const storage = expoStorage(fs);
    await storage.write("active.json", bytes(1));
    writeFileSync(join(folder, "active.json~tmp"), bytes(8, 8, 8, 8)); // a kill mid-write
    assert.deepEqual(await storage.read("active.json"), bytes(1));
    await storage.write("active.json", bytes(3));
    assert.deepEqual(await storage.read("active.json"), bytes(3));
    assert.deepEqual(listing(folder), ["active.json"]);
  });

  it("an expo-file-system whose write ignores { append } (SDK 54) is refused with a typed error, not a silent overwrite", async () => {
    const { fs } = sandbox();
    fs.appendOption = false;
    const storage = expoStorage(fs);
    await storage.append("partial/p.part", bytes(1, 2)); // a new file: appending and replacing agree
    await assert.rejects(storage.append("partial/p.part", bytes(3)), (err: Error & { code?: string }) => {
      return err.code === "pocketml_error" && /expo-file-system >= 55/.test(err.message);
    });
  });

  it("localPath is the file:// URI of the file, inside the root; a path that could leave it is refused", async () => {
    const { fs, folder } = sandbox();
    const storage = expoStorage(fs);
    await storage.write("packages/abc/model.onnx", bytes(1));
    const uri = storage.localPath("packages/abc/model.onnx");
    assert.ok(uri.startsWith("file://"));
    assert.equal(fileURLToPath(uri), join(folder, "packages", "abc", "model.onnx"));
    for (const bad of ["..", "../x", "a/../../x", "/etc/passwd", "a//b", "", "a/./b", "%2e%2e/x", "a\\..\\b", "x~new"]) {
      assert.throws(
        () => storage.localPath(bad),
        (err) => isKind(err, "integrity_failed"),
        bad,
      );
      await assert.rejects(storage.write(bad, bytes(1)), (err) => isKind(err, "integrity_failed"));
    }
  });
});

// -- a whole device over it --------------------------------------------------------------------------

interface PackageVector {
  name: string;
  file: string;
  sha256: string;
  expect: { model_sha256: string; signing_key_id: string };
}
const valid = vectorJson<{ vectors: PackageVector[] }>("packages.json").vectors.find((v) => v.name === "valid-plain") as PackageVector;
const keyring = vectorJson<{ vectors: { name: string; offered: unknown }[] }>("keyrings.json").vectors.find(
  (v) => v.name === "first-use",
)?.offered;
const predictions = vectorJson<{ schema: unknown; cases: { raw: number[]; label: string }[] }>("predictions.json");

/** A scripted server: the check-in, the package (Range, a connection cut once), telemetry. */
class FakeServer {
  readonly data = vectorFile(valid.file);
  readonly policy = { wifi_only: false, charging_only: false, max_cellular_bytes: 0 };
  calls: string[] = [];
  cutAt: number | null = null;

  readonly fetch: Fetch = async (url, init = {}) => {
    const path = new URL(url).pathname;
    this.calls.push(path);
    if (path === "/v1/checkin") {
      const model = conformanceEntry(valid, this.data.length, predictions.schema, { download_policy: this.policy });
      return new Response(checkinBody(keyring, [model]));
    }
    if (path === `/v1/packages/${valid.sha256}`) {
      const range = new Headers(init.headers).get("range");
      const start = range === null ? 0 : Number(/bytes=(\d+)-/.exec(range)?.[1]);
      const cut = this.cutAt;
      this.cutAt = null;
      const body = this.data.slice(start, cut ?? this.data.length);
      let sent = false; // one chunk, then the end or (cut) a broken connection
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (!sent) controller.enqueue(body);
          else if (cut === null) controller.close();
          else controller.error(new TypeError("connection reset"));
          sent = true;
        },
      });
      const headers: Record<string, string> = { "Content-Length": String(this.data.length - start) };
      if (start > 0) headers["Content-Range"] = `bytes ${start}-${this.data.length - 1}/${this.data.length}`;
      return new Response(stream, { status: start > 0 ? 206 : 200, headers });
    }
    if (path === "/v1/telemetry") return new Response('{"accepted":1}', { status: 202 });
    return new Response('{"error":{"code":"not_found","message":"no route"}}', { status: 404 });
  };
}

/**
 * onnxruntime-node given what onnxruntime-react-native is given, the model's file:// URI, and
 * turning it into a path as onnxruntime-react-native 1.24 does (cpp/InferenceSessionHostObject.cpp:
 * drop `file:/`, then `//`; no percent-decoding).
 */
function pathRuntime(loaded: string[]) {
  const ort: OrtLike = {
    Tensor: ortNode.Tensor as unknown as OrtLike["Tensor"],
    env: ortNode.env,
    InferenceSession: {
      create: ((uri: string, options?: object) => {
        loaded.push(uri);
        let path = uri.startsWith("file:/") ? uri.slice(5) : uri;
        if (path.startsWith("//")) path = path.slice(2);
        return ortNode.InferenceSession.create(path, options);
      }) as unknown as OrtLike["InferenceSession"]["create"],
    },
  };
  return ortRuntime(ort, { loadFrom: "path", formats: ["ort", "onnx"] });
}

function open(fs: FakeExpoFileSystem, server: FakeServer, loaded: string[], extra: Partial<DeviceOptions> = {}): Promise<Device> {
  return Device.open({
    serverUrl: "http://pocketml.test",
    deviceKey: "pml_dev_test",
    facts: { platform: "android", os_version: "15", app_version: "1", device_id: "rn-device-001" },
    storage: expoStorage(fs),
    runtime: pathRuntime(loaded),
    fetch: server.fetch,
    sleep: async () => undefined,
    random: () => 0.5,
    downloadRetries: 0,
    ...extra,
  });
}

describe("a whole device over expoStorage", () => {
  it("a download cut at 50 % resumes by appending, the model loads from its file:// URI, and a restart predicts without a download", async () => {
    const { fs, folder } = sandbox();
    const server = new FakeServer();
    const half = Math.floor(server.data.length / 2);
    server.cutAt = half;
    const loaded: string[] = [];
    const device = await open(fs, server, loaded);
    const cut = await device.sync();
    assert.deepEqual([cut.models.conformance?.status, cut.models.conformance?.error?.code], ["failed", "unavailable"]);
    assert.equal(statSync(join(folder, "partial", `${valid.sha256}.part`)).size, half);
    const resumed = await device.sync();
    assert.deepEqual(
      [resumed.models.conformance?.status, resumed.models.conformance?.resumed, resumed.models.conformance?.bytesDownloaded],
      ["updated", true, server.data.length - half],
    );
    const modelUri = expoStorage(fs).localPath(`packages/${valid.sha256}/model.onnx`);
    assert.deepEqual(loaded, [modelUri]);
    assert.ok(!listing(folder).some((f) => f.includes("~") || f.startsWith("partial/")), listing(folder).join());

    const restarted = new FakeServer();
    const again: string[] = [];
    const cold = await open(fs, restarted, again);
    for (const c of predictions.cases) {
      const p = await cold.model("conformance").predict(c.raw);
      assert.deepEqual([p.source, p.label], ["local", c.label]);
    }
    assert.deepEqual([again, restarted.calls], [[modelUri], []]); // offline cold start: loaded from the file, no network
    const report = await cold.sync();
    assert.equal(report.models.conformance?.bytesDownloaded, 0);
    assert.ok(!restarted.calls.some((c) => c.startsWith("/v1/packages/")), restarted.calls.join());
  });

  it("the conditions reach the download: a wifi_only package waits on cellular, a charging_only one while unplugged", async () => {
    for (const [policy, reason] of [
      ["wifi_only", "wifi_only"],
      ["charging_only", "charging_only"],
    ] as const) {
      const { fs } = sandbox();
      const server = new FakeServer();
      server.policy[policy] = true;
      server.policy.max_cellular_bytes = server.data.length; // only the policy under test can block
      const conditions = reactNativeConditions({
        netInfo: netInfo({ type: policy === "wifi_only" ? "cellular" : "wifi", isConnected: true, details: {} }),
        battery: battery(1),
      });
      const report = await (await open(fs, server, [], { conditions })).sync();
      assert.deepEqual([report.models.conformance?.status, report.models.conformance?.reason], ["blocked", reason]);
      assert.ok(!server.calls.some((c) => c.startsWith("/v1/packages/")));
    }
  });
});

// -- NetInfo and expo-battery -------------------------------------------------------------------------

function netInfo(state: Awaited<ReturnType<NetInfoLike["fetch"]>>): NetInfoLike {
  return { fetch: async () => state };
}

function battery(state: number): BatteryLike {
  return { getBatteryStateAsync: async () => state };
}

describe("reactNativeConditions", () => {
  it("maps NetInfo's state to wifi / cellular / offline", async () => {
    const cases: [Awaited<ReturnType<NetInfoLike["fetch"]>>, string][] = [
      [{ type: "wifi", isConnected: true, isInternetReachable: true, details: { isConnectionExpensive: false } }, "wifi"],
      [{ type: "ethernet", isConnected: true, isInternetReachable: null, details: { isConnectionExpensive: false } }, "wifi"],
      [{ type: "wifi", isConnected: true, isInternetReachable: true, details: { isConnectionExpensive: true } }, "cellular"], // a metered hotspot
      [{ type: "cellular", isConnected: true, isInternetReachable: true, details: { isConnectionExpensive: true } }, "cellular"],
      [{ type: "vpn", isConnected: true, isInternetReachable: true, details: { isConnectionExpensive: false } }, "cellular"],
      [{ type: "unknown", isConnected: null, isInternetReachable: null, details: null }, "cellular"],
      [{ type: "none", isConnected: false, isInternetReachable: false, details: null }, "offline"],
      [{ type: "unknown", isConnected: false, isInternetReachable: false, details: null }, "offline"],
      [{ type: "wifi", isConnected: true, isInternetReachable: false, details: { isConnectionExpensive: false } }, "offline"], // a captive portal
    ];
    for (const [state, want] of cases) {
      assert.equal(await reactNativeConditions({ netInfo: netInfo(state) }).networkType?.(), want, JSON.stringify(state));
    }
  });

  it("maps expo-battery's BatteryState to charging: plugged in (charging, full) or not (unplugged, unknown)", async () => {
    const states = { UNKNOWN: 0, UNPLUGGED: 1, CHARGING: 2, FULL: 3 }; // expo-battery's enum
    const got = Object.fromEntries(
      await Promise.all(
        Object.entries(states).map(async ([name, value]) => [
          name,
          await reactNativeConditions({ battery: battery(value) }).isCharging?.(),
        ]),
      ),
    );
    assert.deepEqual(got, { UNKNOWN: false, UNPLUGGED: false, CHARGING: true, FULL: true });
  });

  it("a module not given leaves its condition to the SDK's default", () => {
    const conditions = reactNativeConditions({});
    assert.deepEqual([conditions.networkType, conditions.isCharging], [undefined, undefined]);
  });
});
