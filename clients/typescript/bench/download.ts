/**
 * The download goals of issue 17, over real HTTP (node:http on loopback, a 1.5 MB body):
 * >= 10 progress events per download of >= 1 MB, and a download killed at 50 % and resumed
 * fetches every byte once (the resumed part is exactly the missing half: "0 bytes twice").
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { sha256Hex } from "../src/core/crypto.js";
import { type DownloadEvent, downloadPackage } from "../src/core/download.js";
import { Backoff } from "../src/core/net.js";
import { MemoryStorage } from "../src/core/storage.js";

const SIZE = 1_500_000;
const body = new Uint8Array(randomBytes(SIZE));
const sha = sha256Hex(body);
let cutNext = false;

const server = createServer((req, res) => {
  const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? "")?.[1] ?? 0);
  const part = body.subarray(start);
  res.writeHead(start > 0 ? 206 : 200, {
    "Content-Length": String(part.length),
    ...(start > 0 ? { "Content-Range": `bytes ${start}-${SIZE - 1}/${SIZE}` } : {}),
  });
  if (cutNext) {
    cutNext = false;
    res.write(part.subarray(0, SIZE / 2), () => res.destroy()); // the app is killed at 50 %
    return;
  }
  res.end(part);
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/p`;

async function fetchOnce(storage: MemoryStorage, events: DownloadEvent[]) {
  return downloadPackage({
    fetch: (u, init) => fetch(u, init),
    url,
    headers: {},
    sha256: sha,
    size: SIZE,
    model: "m",
    version: 1,
    storage,
    part: "p.part",
    retries: 0,
    backoff: new Backoff(),
    random: Math.random,
    sleep: async () => undefined,
    idleTimeoutMs: 10_000,
    onEvent: (e) => events.push(e),
  });
}

const whole: DownloadEvent[] = [];
await fetchOnce(new MemoryStorage(), whole);
const progress = whole.filter((e) => e.kind === "progress").length;

const storage = new MemoryStorage();
cutNext = true;
const events: DownloadEvent[] = [];
const first = await fetchOnce(storage, events).catch(() => null);
const kept = (await storage.size("p.part")) ?? 0;
const second = await fetchOnce(storage, events);
const total = kept + second.bytesFetched;
const ok = sha256Hex((await storage.read("p.part")) as Uint8Array) === sha;
server.close();
console.log(
  `progress events for a ${(SIZE / 1e6).toFixed(1)} MB download: ${progress} (goal >= 10 per MB: ${(progress / (SIZE / 1e6)).toFixed(0)} per MB)`,
);
console.log(
  `killed at 50 %: first attempt ${first === null ? "failed" : "finished?!"} with ${kept} bytes kept; resume fetched ${second.bytesFetched} bytes (resumed=${second.resumed}); ` +
    `bytes fetched in all ${total} = package size ${SIZE}: ${total === SIZE ? "no byte fetched twice" : "BYTES REFETCHED"}; sha256 ok: ${ok}`,
);
