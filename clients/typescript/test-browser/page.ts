/**
 * Runs in headless Chromium: the SDK core with `ortRuntime(onnxruntime-web)`, a whole device
 * (check-in, download, verify, install, predict) against a scripted server made of the
 * conformance vectors, which the test's HTTP server serves under /vectors/.
 */
import * as ort from "onnxruntime-web";
import { Device, type Fetch, MemoryStorage, type OrtLike, ortRuntime } from "../src/core/index.js";

async function vector<T>(path: string): Promise<T> {
  return (await (await fetch(`/vectors/${path}`)).json()) as T;
}

async function run(): Promise<unknown> {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = "/ort/";
  const packages = await vector<{ vectors: { name: string; file: string; sha256: string; expect: Record<string, string> }[] }>(
    "packages.json",
  );
  const valid = packages.vectors.find((v) => v.name === "valid-plain") as (typeof packages.vectors)[number];
  const keyrings = await vector<{ vectors: { name: string; offered: unknown }[] }>("keyrings.json");
  const predictions = await vector<{ schema: unknown; cases: { raw: number[] }[] }>("predictions.json");
  const data = new Uint8Array(await (await fetch(`/vectors/${valid.file}`)).arrayBuffer());
  const scripted: Fetch = async (url) => {
    if (new URL(url).pathname !== "/v1/checkin") return new Response(data);
    const model = {
      name: "conformance",
      version: 1,
      variant: "logreg-onnx-fp32",
      format: "onnx",
      precision: "fp32",
      model_sha256: valid.expect.model_sha256,
      package: {
        id: valid.sha256,
        url: `/v1/packages/${valid.sha256}`,
        size: data.length,
        sha256: valid.sha256,
        signing_key_id: valid.expect.signing_key_id,
        content_key_id: null,
      },
      download_policy: { wifi_only: false, charging_only: false, max_cellular_bytes: 0 },
      hybrid: {
        mode: "local",
        threshold: 0.5,
        cloud_route: "/v1/models/conformance/predict",
        cloud_variant: null,
        timeout_ms: 100,
        max_retries: 0,
      },
      schema: predictions.schema,
    };
    const keyring = keyrings.vectors.find((v) => v.name === "first-use")?.offered;
    return new Response(JSON.stringify({ app_id: "conformance-app", keyring, keyring_chain: [], models: [model] }));
  };
  const device = await Device.open({
    serverUrl: "http://pocketml.test",
    deviceKey: "k",
    storage: new MemoryStorage(),
    runtime: ortRuntime(ort as unknown as OrtLike, { loadFrom: "bytes", formats: ["onnx"] }),
    fetch: scripted,
    facts: { platform: "linux", os_version: navigator.userAgent.slice(0, 32), app_version: "1", device_id: "browser-device-01" },
  });
  const report = await device.sync();
  const results = [];
  for (const c of predictions.cases) {
    const p = await device.model("conformance").predict(c.raw);
    results.push({ label: p.label, source: p.source, probabilities: Array.from(p.probabilities) });
  }
  return { status: report.models.conformance?.status, error: report.models.conformance?.error?.message ?? null, results };
}

const w = window as unknown as { __pocketml: unknown };
run().then(
  (result) => {
    w.__pocketml = result;
  },
  (err: Error) => {
    w.__pocketml = { error: `${err.name}: ${err.message}` };
  },
);
