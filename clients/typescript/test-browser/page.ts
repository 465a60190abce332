/**
 * Runs in headless Chromium: the SDK core with `ortRuntime(onnxruntime-web)`, a whole device
 * (check-in, download, verify, install, predict) against a scripted server made of the
 * conformance vectors, which the test's HTTP server serves under /vectors/.
 */
import * as ort from "onnxruntime-web";
import { Device, type Fetch, IndexedDBStorage, MemoryStorage, type OrtLike, ortRuntime, type Storage } from "../src/web/index.js";
import { checkinBody, conformanceEntry } from "../test/scripted.js";

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
  let cutAt: number | null = null;
  const scripted: Fetch = async (url, init = {}) => {
    if (new URL(url).pathname !== "/v1/checkin") {
      const range = new Headers(init.headers).get("range");
      const start = range === null ? 0 : Number(/bytes=(\d+)-/.exec(range)?.[1]);
      const cut = cutAt;
      cutAt = null;
      const headers: Record<string, string> = { "Content-Length": String(data.length - start) };
      if (start > 0) headers["Content-Range"] = `bytes ${start}-${data.length - 1}/${data.length}`;
      // The connection breaks after `cut` bytes (the tab was closed mid-download); the bytes
      // before it are delivered first (an error in the same pull would discard them).
      let sent = false;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (!sent) controller.enqueue(data.slice(start, cut ?? data.length));
          else if (cut === null) controller.close();
          else controller.error(new TypeError("connection reset"));
          sent = true;
        },
      });
      return new Response(body, { status: start > 0 ? 206 : 200, headers });
    }
    const keyring = keyrings.vectors.find((v) => v.name === "first-use")?.offered;
    return new Response(checkinBody(keyring, [conformanceEntry(valid, data.length, predictions.schema)]));
  };
  const open = (storage: Storage) =>
    Device.open({
      serverUrl: "http://pocketml.test",
      deviceKey: "k",
      storage,
      runtime: ortRuntime(ort as unknown as OrtLike, { loadFrom: "bytes", formats: ["onnx"] }),
      fetch: scripted,
      facts: { platform: "web", os_version: "browser", app_version: "1", device_id: "browser-device-02" },
      downloadRetries: 0,
    });
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
  // IndexedDB: a download cut at 50 % resumes in a new Device over a reopened database (a
  // reload), fetching only the missing bytes; then the storage contract, file by file.
  cutAt = Math.floor(data.length / 2);
  const killed = await IndexedDBStorage.open("pocketml-test");
  const first = await (await open(killed)).sync();
  await killed.close(); // the tab closes mid-download
  const reopened = await IndexedDBStorage.open("pocketml-test");
  const resumed = await (await open(reopened)).sync();
  // One tab at a time: a second open of the same database is refused while the first holds it.
  let second = "opened";
  try {
    await IndexedDBStorage.open("pocketml-test");
  } catch (err) {
    second = (err as { code?: string }).code ?? String(err);
  }
  await reopened.close();
  const storage = await IndexedDBStorage.open("pocketml-test");
  await storage.write("a/x", new Uint8Array([1, 2]));
  await storage.append("a/x", new Uint8Array([3]));
  await storage.append("a/y", new Uint8Array([4]));
  await storage.write("ab", new Uint8Array([5]));
  const contract: unknown[] = [Array.from((await storage.read("a/x")) ?? []), await storage.size("a/x"), await storage.size("a/y")];
  await storage.write("a/x", new Uint8Array([9]));
  contract.push(Array.from((await storage.read("a/x")) ?? []));
  await storage.remove("a");
  contract.push(
    await storage.read("a/x"),
    await storage.read("a/y"),
    Array.from((await storage.read("ab")) ?? []),
    (await storage.freeBytes()) > 0,
  );
  return {
    status: report.models.conformance?.status,
    error: report.models.conformance?.error?.message ?? null,
    results,
    indexeddb: {
      cut: [first.models.conformance?.status, first.models.conformance?.error?.code],
      resumed: [resumed.models.conformance?.status, resumed.models.conformance?.bytesDownloaded, resumed.models.conformance?.resumed],
      size: data.length,
      contract,
      second,
    },
  };
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
