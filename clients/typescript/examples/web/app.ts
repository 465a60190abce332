/**
 * A web page as a pocketml device (the example of docs/typescript.md, "Web"): check-in,
 * verified download with a progress bar, the model kept in IndexedDB, predictions in the
 * browser with onnxruntime-web, feedback, telemetry sent when the tab is hidden.
 *
 * Served by `serve.mjs` on the same origin as the pocketml server's /v1 routes (it proxies
 * them), so the device key is sent only there and no CORS is needed.
 */
import { SampleCapture } from "@pocketml/device/capture";
import { Sketcher } from "@pocketml/device/sketch";
import { Device, type DownloadEvent, IndexedDBStorage, type OrtLike, ortRuntime, type Prediction } from "@pocketml/device/web";
import * as ort from "onnxruntime-web";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const number = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 4 });
const size = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });
const bytes = (n: number): string =>
  n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${size.format(n / 1024)} KiB` : `${size.format(n / 1024 ** 2)} MiB`;

ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = "/ort/";

let device: Device | null = null;
let last: Prediction | null = null;

function settings(): { key: string; model: string } {
  const query = new URLSearchParams(location.search);
  return {
    key: query.get("key") ?? localStorage.getItem("pocketml.key") ?? "",
    model: query.get("model") ?? localStorage.getItem("pocketml.model") ?? "",
  };
}

function showError(err: unknown): void {
  $("error").textContent = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function onDownload(event: DownloadEvent): void {
  const bar = $<HTMLProgressElement>("progress");
  bar.max = Math.max(event.total, 1);
  bar.value = event.bytes;
  if (event.kind === "progress") $("status").textContent = `Downloading v${event.version}: ${bytes(event.bytes)} of ${bytes(event.total)}`;
}

async function sync(key: string, model: string): Promise<void> {
  localStorage.setItem("pocketml.key", key);
  localStorage.setItem("pocketml.model", model);
  const status = $("status");
  status.dataset.state = "syncing";
  status.textContent = "Checking in...";
  device ??= await Device.open({
    serverUrl: location.origin,
    deviceKey: key,
    // A web page is its own platform: the server targets and counts it as `web`.
    facts: { platform: "web", os_version: navigator.platform.slice(0, 32) || "unknown", app_version: "1.0.0" },
    storage: await IndexedDBStorage.open(),
    runtime: ortRuntime(ort as unknown as OrtLike, { loadFrom: "bytes", formats: ["onnx"] }),
    onDownload,
    // Monitoring: histograms of what the model sees, per window (docs/monitoring.md).
    sketches: new Sketcher(),
    // Consented capture: nothing leaves the page until the user ticks the box.
    capture: new SampleCapture(),
  });
  $("device-id").textContent = device.deviceId;
  $<HTMLInputElement>("consent").checked = device.consent;
  const report = await device.sync();
  const mine = report.models[model];
  if (mine === undefined) {
    status.dataset.state = "missing";
    status.textContent = `The server offers no model "${model}" to this device (it offers: ${Object.keys(report.models).join(", ") || "none"}).`;
    return;
  }
  const how = mine.fromCache
    ? "installed from this browser's cache"
    : mine.bytesDownloaded > 0
      ? `downloaded ${bytes(mine.bytesDownloaded)}${mine.resumed ? " (resumed)" : ""}`
      : "already installed";
  status.dataset.state = mine.status;
  status.dataset.downloaded = String(mine.bytesDownloaded);
  status.textContent =
    mine.status === "failed"
      ? `Sync failed at ${mine.reason}: ${mine.error?.message ?? "unknown error"} (the previous model, if any, keeps answering).`
      : `${model} v${mine.version} (${mine.variant ?? "cloud only"}): ${mine.status}, ${how}.`;
  $<HTMLProgressElement>("progress").value = $<HTMLProgressElement>("progress").max;
}

async function predict(text: string, model: string): Promise<void> {
  if (device === null) throw new Error("Sync first: the device has no model yet.");
  const values = text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
  if (values.some((v) => !Number.isFinite(v))) throw new Error("The input must be numbers separated by commas or spaces.");
  last = await device.model(model).predict(values);
  delete $("answer").dataset.flushed;
  const rows: [string, string][] = [
    ["label", last.label],
    ["confidence", `${number.format(last.confidence * 100)} %`],
    ["answered by", `${last.source}${last.version === null ? "" : ` (v${last.version})`}`],
    ["latency", `${number.format(last.latencyMs)} ms`],
  ];
  const answer = $("answer");
  answer.replaceChildren(
    ...rows.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      dd.dataset.field = name;
      return [dt, dd];
    }),
  );
  for (const id of ["right", "wrong"]) $<HTMLButtonElement>(id).disabled = false;
}

async function feedback(thumbs: "up" | "down", model: string): Promise<void> {
  if (device === null || last === null) return;
  device.feedback(last.predictionId, model, { thumbs }, last.version);
  for (const id of ["right", "wrong"]) $<HTMLButtonElement>(id).disabled = true;
  const report = await device.flush();
  $("error").textContent = report.pending > 0 ? `Offline: ${report.pending} events wait for the next flush.` : "";
  $("answer").dataset.flushed = "true"; // what the browser test waits for
  const samples = report.samples;
  $("privacy-status").textContent =
    samples === null || samples.sent === 0 ? "" : `${samples.sent} shared input${samples.sent === 1 ? "" : "s"} sent.`;
}

async function consent(on: boolean): Promise<void> {
  if (device === null) throw new Error("Sync first: consent is kept per device.");
  await device.setConsent(on);
  $("privacy-status").textContent = on ? "Thank you: some inputs will be shared." : "Nothing is shared; what was kept here is deleted.";
}

async function forget(): Promise<void> {
  if (device === null) throw new Error("Sync first.");
  const report = await device.forgetMe();
  $<HTMLInputElement>("consent").checked = device.consent;
  const status = $("privacy-status");
  status.dataset.state = report.queued ? "queued" : "done";
  status.textContent = report.queued
    ? "Deleted here; the server will be asked again at the next flush (it did not answer)."
    : "Deleted here and on the server.";
}

function guarded(work: () => Promise<void>): () => void {
  return () => {
    $("error").textContent = "";
    work().catch(showError);
  };
}

const initial = settings();
$<HTMLInputElement>("key").value = initial.key;
$<HTMLInputElement>("model").value = initial.model;
const model = (): string => $<HTMLInputElement>("model").value.trim();

$("sync").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(() => sync($<HTMLInputElement>("key").value.trim(), model()))();
});
$("predict").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded(() => predict($<HTMLTextAreaElement>("input").value, model()))();
});
$("consent").addEventListener("change", () => guarded(() => consent($<HTMLInputElement>("consent").checked))());
$("forget").addEventListener("click", guarded(forget));
$("right").addEventListener(
  "click",
  guarded(() => feedback("up", model())),
);
$("wrong").addEventListener(
  "click",
  guarded(() => feedback("down", model())),
);
// A hidden tab may never come back: save the queue and send what can be sent.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden" && device !== null) device.flush().catch(() => device?.save());
});
if (initial.key && initial.model) guarded(() => sync(initial.key, initial.model))();
