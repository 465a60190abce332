/**
 * Faults a real server will not produce on demand: tampered packages, cut and oversize
 * downloads, a full disk, a cloud that fails, hangs or answers garbage. The transport is a
 * fake (`fetch` is injected) serving the conformance vectors' real package bytes; the
 * device, verification, storage and onnxruntime-node are the real ones.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Device, type DeviceOptions, type Fetch, isKind, MemoryStorage } from "../src/core/index.js";
import { FileStorage, OnnxNodeRuntime } from "../src/node/index.js";
import { conformanceEntry } from "./scripted.js";
import { vectorFile, vectorJson } from "./vectors.js";

interface PackageVector {
  name: string;
  file: string;
  sha256: string;
  expect: { model_sha256?: string; signing_key_id?: string };
}
const packages = vectorJson<{ vectors: PackageVector[] }>("packages.json").vectors;
const keyrings = vectorJson<{ vectors: { name: string; offered: Record<string, unknown> }[] }>("keyrings.json").vectors;
const predictions = vectorJson<{ schema: Record<string, unknown>; cases: { raw: number[]; confidence: number; label: string }[] }>(
  "predictions.json",
);
const valid = packages.find((v) => v.name === "valid-plain") as PackageVector;
const keyring = keyrings.find((v) => v.name === "first-use")?.offered as Record<string, unknown>;
const runtime = new OnnxNodeRuntime();
const low = predictions.cases[0] as { raw: number[]; confidence: number; label: string }; // confidence 0.73 < 0.9

/** The entry of a package vector's file (a tampered one too: its sha256, the valid model's hashes). */
function entry(file: string, hybrid: Record<string, unknown> = {}) {
  const data = vectorFile(file);
  const sha = packages.find((v) => v.file === file)?.sha256 as string;
  const json = conformanceEntry({ file, sha256: sha, expect: valid.expect }, data.length, predictions.schema, {
    download_policy: { max_cellular_bytes: 1000 },
    hybrid: { threshold: 0.8, timeout_ms: 1000, max_retries: 1, ...hybrid },
  });
  return { data, json };
}

/** A scripted server: the current manifest, its packages, and hooks for faults. */
class FakeServer {
  manifest: ReturnType<typeof entry>[] = [entry(valid.file)];
  calls: string[] = [];
  cloud: (init: RequestInit) => Promise<Response> = async () => new Response("{}", { status: 503 });
  /** Bytes after which a package stream breaks (once), or null. */
  cutAt: number | null = null;
  extraLength = 0;

  readonly fetch: Fetch = async (url, init = {}) => {
    const path = new URL(url).pathname;
    this.calls.push(path);
    if (path === "/v1/checkin") {
      const body = JSON.stringify({
        app_id: "conformance-app",
        checkin_interval_s: 3600,
        keyring,
        keyring_chain: [],
        models: this.manifest.map((m) => m.json),
      });
      return new Response(body, { status: 200, headers: { ETag: `"${this.manifest.map((m) => m.json.package.sha256).join()}"` } });
    }
    if (path.startsWith("/v1/packages/")) {
      const m = this.manifest.find((x) => path.endsWith(x.json.package.sha256));
      if (m === undefined) return new Response('{"error":{"code":"not_found","message":"no"}}', { status: 404 });
      const range = new Headers(init.headers).get("range");
      const start = range === null ? 0 : Number(/bytes=(\d+)-/.exec(range)?.[1]);
      const body = m.data.subarray(start);
      const cut = this.cutAt;
      this.cutAt = null;
      // Chunks of 256 bytes, pulled one by one; with a cut, the connection breaks there.
      const end = cut === null ? body.length : cut - start;
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= end) {
            if (cut === null) controller.close();
            else controller.error(new TypeError("connection reset"));
            return;
          }
          controller.enqueue(body.slice(sent, Math.min(end, sent + 256)));
          sent += 256;
        },
      });
      const headers: Record<string, string> = { "Content-Length": String(body.length + this.extraLength) };
      if (start > 0) headers["Content-Range"] = `bytes ${start}-${m.data.length - 1}/${m.data.length}`;
      return new Response(stream, { status: start > 0 ? 206 : 200, headers });
    }
    if (path === "/v1/models/conformance/predict") return this.cloud(init);
    if (path === "/v1/telemetry") return new Response('{"accepted":1}', { status: 202 });
    return new Response('{"error":{"code":"not_found","message":"no route"}}', { status: 404 });
  };
}

let tmp: string;
let n = 0;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "pocketml-faults-"));
});
after(async () => rm(tmp, { recursive: true, force: true }));

async function open(server: FakeServer, extra: Partial<DeviceOptions> = {}): Promise<Device> {
  return Device.open({
    serverUrl: "http://pocketml.test",
    deviceKey: "pml_dev_test",
    facts: { platform: "linux", os_version: "6", app_version: "1", device_id: "fault-device-01" },
    storage: new FileStorage(join(tmp, `d${++n}`)),
    runtime,
    fetch: server.fetch,
    sleep: async () => undefined,
    random: () => 0.5,
    downloadRetries: 0,
    ...extra,
  });
}

describe("bad packages keep the previous model serving", () => {
  for (const name of ["flip-model-byte", "untrusted-key", "wrong-app", "unsigned", "zip-slip"]) {
    it(`${name}: refused with the vector's code, the old model still predicts`, async () => {
      const server = new FakeServer();
      const device = await open(server);
      assert.equal((await device.sync()).models.conformance?.status, "updated");
      const bad = packages.find((v) => v.name === name) as PackageVector & { expect: { error: string } };
      server.manifest = [entry(bad.file)];
      const report = await device.sync();
      assert.equal(report.models.conformance?.status, "failed");
      assert.equal(report.models.conformance?.error?.code, (bad.expect as { error: string }).error);
      const p = await device.model("conformance").predict(predictions.cases[1]?.raw as number[]);
      assert.deepEqual([p.source, p.label], ["local", predictions.cases[1]?.label]);
    });
  }
});

describe("downloads", () => {
  it("a download cut at 50 % resumes at the next sync and fetches only the missing bytes", async () => {
    const server = new FakeServer();
    const size = server.manifest[0]?.data.length as number;
    server.cutAt = Math.floor(size / 2);
    const device = await open(server);
    const cut = await device.sync();
    assert.deepEqual([cut.models.conformance?.status, cut.models.conformance?.error?.code], ["failed", "unavailable"]);
    const resumed = await device.sync();
    assert.deepEqual(
      [resumed.models.conformance?.status, resumed.models.conformance?.bytesDownloaded, resumed.models.conformance?.resumed],
      ["updated", size - Math.floor(size / 2), true],
    );
  });

  it("a Content-Length past the announced size is refused before a byte is written", async () => {
    const server = new FakeServer();
    server.extraLength = 1;
    const storage = new MemoryStorage();
    const device = await open(server, { storage });
    const report = await device.sync();
    assert.equal(report.models.conformance?.error?.code, "download_oversize");
    assert.deepEqual(
      [...storage.files.keys()].filter((k) => k.startsWith("partial/") || k.startsWith("packages/")),
      [],
    );
  });

  it("a full disk fails the model with reason disk and writes nothing", async () => {
    const server = new FakeServer();
    const storage = new MemoryStorage(100);
    const device = await open(server, { storage });
    const report = await device.sync();
    assert.deepEqual([report.models.conformance?.status, report.models.conformance?.reason], ["failed", "disk"]);
    assert.equal(server.calls.filter((c) => c.startsWith("/v1/packages/")).length, 0);
  });

  it("download conditions: a wifi-only package is not fetched over cellular", async () => {
    const server = new FakeServer();
    (server.manifest[0]?.json.download_policy as { wifi_only: boolean }).wifi_only = true;
    const device = await open(server, { conditions: { networkType: () => "cellular" } });
    const report = await device.sync();
    assert.deepEqual([report.models.conformance?.status, report.models.conformance?.reason], ["blocked", "wifi_only"]);
  });
});

describe("hybrid policy", () => {
  it("cascade: a failing cloud is retried within budget, then the local answer comes back as fallback", async () => {
    const server = new FakeServer();
    server.manifest = [entry(valid.file, { mode: "cascade", threshold: 0.9, max_retries: 2 })];
    const device = await open(server);
    await device.sync();
    const p = await device.model("conformance").predict(low.raw);
    assert.deepEqual([p.source, p.label], ["fallback", low.label]);
    assert.equal(server.calls.filter((c) => c.endsWith("/predict")).length, 3);
  });

  it("cascade: after repeated failures the breaker opens and the cloud is not called", async () => {
    const server = new FakeServer();
    server.manifest = [entry(valid.file, { mode: "cascade", threshold: 0.9, max_retries: 0 })];
    const device = await open(server, { breakerThreshold: 2, breakerCooldownMs: 60_000 });
    await device.sync();
    for (let i = 0; i < 4; i++) await device.model("conformance").predict(low.raw);
    assert.equal(server.calls.filter((c) => c.endsWith("/predict")).length, 2);
    assert.equal(device.breakerState, "open");
  });

  it("cascade: a cloud answer of garbage or a hang is a fallback, not a crash", async () => {
    for (const cloud of [
      async () => new Response("<html>", { status: 200 }),
      (init: RequestInit) =>
        new Promise<Response>((_, reject) =>
          init.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
        ),
    ]) {
      const server = new FakeServer();
      server.manifest = [entry(valid.file, { mode: "cascade", threshold: 0.9, max_retries: 0, timeout_ms: 20 })];
      server.cloud = cloud;
      const device = await open(server);
      await device.sync();
      assert.equal((await device.model("conformance").predict(low.raw)).source, "fallback");
    }
  });

  it("cascade: a confident cloud answer is used, with the cloud's version", async () => {
    const server = new FakeServer();
    server.manifest = [entry(valid.file, { mode: "cascade", threshold: 0.9 })];
    server.cloud = async () =>
      new Response(
        JSON.stringify({
          version: 7,
          variant: "big",
          predictions: [{ label: "yes", index: 1, confidence: 0.99, probabilities: [0.01, 0.99] }],
        }),
      );
    const device = await open(server);
    await device.sync();
    const p = await device.model("conformance").predict(low.raw);
    assert.deepEqual([p.source, p.label, p.version], ["cloud", "yes", 7]);
  });

  it("a check-in that changes only the policy reaches a predictor made before it", async () => {
    const server = new FakeServer();
    server.manifest = [entry(valid.file, { mode: "local" })];
    server.cloud = async () =>
      new Response(JSON.stringify({ predictions: [{ label: "yes", index: 1, confidence: 0.99, probabilities: [0.01, 0.99] }] }));
    const device = await open(server);
    await device.sync();
    const model = device.model("conformance");
    assert.equal((await model.predict(low.raw)).source, "local");
    server.manifest = [entry(valid.file, { mode: "cascade", threshold: 1.0 })]; // same package
    await device.sync();
    assert.equal((await model.predict(low.raw)).source, "cloud");
  });

  it("cloud-only without a local model and a dead cloud is a typed unavailable error", async () => {
    const server = new FakeServer();
    server.manifest = [entry(valid.file, { mode: "cloud", max_retries: 0 })];
    const device = await open(server);
    await device.sync();
    await assert.rejects(device.model("conformance").predict(low.raw), (err) => isKind(err, "unavailable"));
  });
});

describe("check-in faults", () => {
  it("a 5xx or a non-JSON check-in is a typed error and keeps the installed model", async () => {
    const server = new FakeServer();
    const device = await open(server);
    await device.sync();
    const real = server.fetch;
    const broken: Fetch[] = [async () => new Response("oops", { status: 502 }), async () => new Response("<html>", { status: 200 })];
    for (const fetch of broken) {
      (server as { fetch: Fetch }).fetch = fetch;
      const failing = await Device.open({
        serverUrl: "http://pocketml.test",
        deviceKey: "k",
        facts: { platform: "linux", os_version: "6", app_version: "1", device_id: "fault-device-01" },
        storage: new FileStorage(join(tmp, `d${n}`)),
        runtime,
        fetch,
        sleep: async () => undefined,
      });
      await assert.rejects(failing.sync(), (err) => isKind(err, "unavailable") || isKind(err, "protocol_error"));
      assert.equal((await failing.model("conformance").predict(low.raw)).source, "local");
    }
    (server as { fetch: Fetch }).fetch = real;
  });
});

describe("manifest faults", () => {
  it("an entry with a bad field is refused with protocol_error; the model's previous entry and package stay", async () => {
    const server = new FakeServer();
    const device = await open(server);
    await device.sync();
    const broken = entry(valid.file);
    (broken.json as Record<string, unknown>).model_sha256 = "not a sha256";
    server.manifest = [broken];
    const report = await device.sync();
    assert.deepEqual(
      [report.models.conformance?.status, report.models.conformance?.reason, report.models.conformance?.error?.code],
      ["failed", "protocol", "protocol_error"],
    );
    assert.equal((await device.model("conformance").predict(low.raw)).source, "local");
  });
});
