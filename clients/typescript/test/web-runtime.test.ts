/**
 * The onnxruntime-web adapter (`ortRuntime`, as a web page uses it) under Node's WASM
 * backend: the prediction vectors through a whole Device (sync from a scripted server,
 * verify, install, predict). Headless Chromium is not run here (see docs/typescript.md).
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import * as ortWeb from "onnxruntime-web";
import { Device, type Fetch, MemoryStorage, type OrtLike, ortRuntime } from "../src/core/index.js";
import { checkinBody, conformanceEntry } from "./scripted.js";
import { vectorFile, vectorJson } from "./vectors.js";

const valid = vectorJson<{ vectors: { name: string; file: string; sha256: string; expect: Record<string, string> }[] }>(
  "packages.json",
).vectors.find((v) => v.name === "valid-plain") as { file: string; sha256: string; expect: Record<string, string> };
const keyring = vectorJson<{ vectors: { name: string; offered: unknown }[] }>("keyrings.json").vectors.find(
  (v) => v.name === "first-use",
)?.offered;
const predictions = vectorJson<{ schema: unknown; tolerance: number; cases: { raw: number[]; probabilities: number[]; label: string }[] }>(
  "predictions.json",
);

const serve: Fetch = async (url) => {
  const data = vectorFile(valid.file);
  if (new URL(url).pathname !== "/v1/checkin") return new Response(data as Uint8Array<ArrayBuffer>);
  return new Response(checkinBody(keyring, [conformanceEntry(valid, data.length, predictions.schema)]));
};

it("onnxruntime-web (WASM) runs the prediction vectors through a whole Device", async () => {
  ortWeb.env.wasm.numThreads = 1;
  const device = await Device.open({
    serverUrl: "http://web.test",
    deviceKey: "k",
    storage: new MemoryStorage(),
    runtime: ortRuntime(ortWeb as unknown as OrtLike, { loadFrom: "bytes" }),
    fetch: serve,
    facts: { platform: "linux", os_version: "web", app_version: "1", device_id: "web-device-001" },
  });
  assert.equal((await device.sync()).models.conformance?.status, "updated");
  for (const c of predictions.cases) {
    const p = await device.model("conformance").predict(c.raw);
    assert.equal(p.label, c.label);
    for (const [i, want] of c.probabilities.entries()) assert.ok(Math.abs((p.probabilities[i] as number) - want) <= predictions.tolerance);
  }
});

it("a path-loading runtime (React Native) refuses a storage without local paths with a typed error", async () => {
  const runtime = ortRuntime(ortWeb as unknown as OrtLike, { loadFrom: "path" });
  await assert.rejects(runtime.load(new Uint8Array(1), "onnx"), (err: Error & { code?: string }) => err.code === "invalid_input");
});
