/**
 * The network-fault scripts of conformance/faults.json (shared with the Python SDK's
 * runner): a scripted `fetch` serves each step's check-in, package (cut, oversized) and cloud
 * answers; the packages are the vectors' real bytes, the device and onnxruntime-node real.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Device, type Fetch } from "../src/core/index.js";
import { FileStorage, OnnxNodeRuntime } from "../src/node/index.js";
import { vectorFile, vectorJson } from "./vectors.js";

interface SyncStep {
  package: string;
  sha256: string;
  size: number;
  cut_at?: number;
  extra_content_length?: number;
  hybrid?: Record<string, unknown>;
}
type Step =
  | { sync: SyncStep; checkin?: { status: number; body: string }; expect: Record<string, unknown> }
  | { predict: number; cloud?: { status: number; body?: string }; expect: Record<string, unknown> };
interface Faults {
  app_id: string;
  keyring: unknown;
  device: { platform: "linux"; os_version: string; app_version: string; device_id: string };
  entry: Record<string, unknown> & { name: string; package: Record<string, unknown>; hybrid: Record<string, unknown> };
  scripts: { name: string; steps: Step[] }[];
}

const faults = vectorJson<Faults>("faults.json");
const predictions = vectorJson<{ cases: { raw: number[]; label: string }[] }>("predictions.json");
const runtime = new OnnxNodeRuntime();

class ScriptedServer {
  sync: SyncStep | null = null;
  checkin: { status: number; body: string } | null = null;
  cloud: { status: number; body?: string } = { status: 503 };
  cloudCalls = 0;

  readonly fetch: Fetch = async (url, init = {}) => {
    const path = new URL(url).pathname;
    const step = this.sync as SyncStep;
    if (path === "/v1/checkin" && this.checkin !== null) return new Response(this.checkin.body, { status: this.checkin.status });
    if (path === "/v1/checkin") {
      const entry = structuredClone(faults.entry);
      Object.assign(entry.package, { id: step.sha256, sha256: step.sha256, size: step.size, url: `/v1/packages/${step.sha256}` });
      Object.assign(entry.hybrid, step.hybrid ?? {});
      const body = { app_id: faults.app_id, checkin_interval_s: 3600, keyring: faults.keyring, keyring_chain: [], models: [entry] };
      return new Response(JSON.stringify(body), { status: 200 });
    }
    if (path.startsWith("/v1/packages/")) {
      const data = vectorFile(step.package);
      const start = Number(/bytes=(\d+)-/.exec(new Headers(init.headers).get("range") ?? "")?.[1] ?? 0);
      const body = data.slice(start);
      const headers: Record<string, string> = { "Content-Length": String(body.length + (step.extra_content_length ?? 0)) };
      if (start > 0) headers["Content-Range"] = `bytes ${start}-${data.length - 1}/${data.length}`;
      const cut = step.cut_at !== undefined && start < step.cut_at ? step.cut_at - start : null;
      let sent = false;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent) {
            if (cut === null) controller.close();
            else controller.error(new TypeError("connection reset by the script"));
            return;
          }
          controller.enqueue(cut === null ? body : body.slice(0, cut));
          sent = true;
        },
      });
      return new Response(stream, { status: start > 0 ? 206 : 200, headers });
    }
    if (path.endsWith("/predict")) {
      this.cloudCalls += 1;
      return new Response(this.cloud.body ?? "{}", { status: this.cloud.status });
    }
    return new Response('{"accepted":0,"duplicate":false,"rejected":[]}', { status: 202 });
  };
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "pocketml-scripts-"));
});
after(async () => rm(tmp, { recursive: true, force: true }));

describe("fault scripts", () => {
  for (const script of faults.scripts) {
    it(script.name, async () => {
      const server = new ScriptedServer();
      const { platform, os_version, app_version, device_id } = faults.device;
      const device = await Device.open({
        serverUrl: "http://pocketml.test",
        deviceKey: "pml_dev_conformance",
        facts: { platform, os_version, app_version, device_id },
        storage: new FileStorage(join(tmp, script.name)),
        runtime,
        fetch: server.fetch,
        sleep: async () => undefined,
        downloadRetries: 0,
      });
      for (const step of script.steps) {
        if ("sync" in step) {
          server.sync = step.sync;
          server.checkin = step.checkin ?? null;
          if ("raises" in step.expect) {
            await assert.rejects(device.sync(), (err: Error & { code?: string }) => err.code === step.expect.raises);
            continue;
          }
          const synced = (await device.sync()).models[faults.entry.name];
          const got: Record<string, unknown> = {
            status: synced?.status,
            error: synced?.error?.code ?? null,
            bytes_downloaded: synced?.bytesDownloaded,
            resumed: synced?.resumed,
          };
          assert.deepEqual(Object.fromEntries(Object.keys(step.expect).map((k) => [k, got[k]])), step.expect, synced?.error?.message);
        } else {
          server.cloud = step.cloud ?? server.cloud;
          server.cloudCalls = 0;
          const c = predictions.cases[step.predict] as { raw: number[]; label: string };
          const p = await device.model(faults.entry.name).predict(c.raw);
          const got: Record<string, unknown> = { source: p.source, cloud_calls: server.cloudCalls };
          assert.equal(p.label, c.label);
          assert.deepEqual(Object.fromEntries(Object.keys(step.expect).map((k) => [k, got[k]])), step.expect);
        }
      }
    });
  }
});
