/**
 * Download a package into `partial/<sha256>.part`, resuming with HTTP Range across
 * restarts (the partial file lives in the app's storage), with byte-level progress.
 *
 * Each attempt asks `Range: bytes=<have>-` when part of the file is already there and
 * appends the 206 body; a 200 restarts from zero. Every chunk is written as it arrives, so a
 * cut (or a killed app) keeps every byte received. Never more than the announced
 * `package.size` bytes reach storage (`download_oversize`, partial file deleted). Network
 * failures, stalls and 5xx are retried with backoff and jitter; other answers are typed
 * errors at once. Redirects are not followed.
 */
import { fail, PocketMLError } from "./errors.js";
import { answerError, type Backoff, type Fetch, networkError, withRetries } from "./net.js";
import type { Storage } from "./storage.js";

export interface DownloadEvent {
  kind: "started" | "progress" | "done" | "failed";
  model: string;
  version: number | null;
  /** Bytes of the package on storage now. */
  bytes: number;
  total: number;
  resumed: boolean;
  /** Why it failed (`failed` only): the error code and message. */
  error?: string;
}

export interface DownloadRequest {
  fetch: Fetch;
  url: string;
  headers: Record<string, string>;
  sha256: string;
  size: number;
  model: string;
  version: number | null;
  storage: Storage;
  part: string;
  retries: number;
  backoff: Backoff;
  random: () => number;
  sleep: (ms: number) => Promise<void>;
  /** A download whose server sends nothing for this long is cut (and retried). */
  idleTimeoutMs: number;
  onEvent?: (event: DownloadEvent) => void;
}

export interface DownloadResult {
  bytesFetched: number;
  resumed: boolean;
  attempts: number;
}

function oversize(req: DownloadRequest, detail: string): PocketMLError {
  return fail(
    "download_oversize",
    `package ${req.sha256.slice(0, 16)} is announced as ${req.size} bytes but the server sent more (${detail}). Nothing past the announced size was written; the partial file was deleted and the previous model stays active.`,
  );
}

async function fetchOnce(req: DownloadRequest, counters: { fetched: number; resumed: boolean }): Promise<void> {
  let have = (await req.storage.size(req.part)) ?? 0;
  if (have >= req.size) {
    await req.storage.remove(req.part);
    have = 0;
  }
  const controller = new AbortController();
  let timer = setTimeout(() => controller.abort(), req.idleTimeoutMs);
  const headers = { ...req.headers, ...(have > 0 ? { Range: `bytes=${have}-`, "If-Range": `"${req.sha256}"` } : {}) };
  try {
    let response: Response;
    try {
      response = await req.fetch(req.url, { headers, redirect: "manual", signal: controller.signal });
    } catch (err) {
      throw networkError(err, `the download of package ${req.sha256.slice(0, 16)}`);
    }
    if (response.status >= 400) throw await answerError(response, "the package download");
    let resumed = false;
    if (response.status === 206 && have > 0) {
      const range = response.headers.get("content-range") ?? "";
      if (!range.startsWith(`bytes ${have}-`)) {
        await req.storage.remove(req.part);
        throw fail("unavailable", `the server answered Range bytes=${have}- with '${range}'; retrying from the start`);
      }
      resumed = true;
    } else if (response.status === 200) {
      if (have > 0) await req.storage.remove(req.part);
      have = 0;
    } else {
      throw fail(
        "integrity_failed",
        `the package download answered HTTP ${response.status}; expected 200, or 206 to a Range request. Redirects are not followed.`,
      );
    }
    const length = response.headers.get("content-length");
    if (length !== null && (!/^\d+$/.test(length) || have + Number(length) > req.size)) {
      throw oversize(req, `Content-Length ${length.slice(0, 20)} from byte ${have}`);
    }
    counters.resumed ||= resumed;
    req.onEvent?.({ kind: "started", model: req.model, version: req.version, bytes: have, total: req.size, resumed });
    const write = async (chunk: Uint8Array) => {
      if (have + chunk.length > req.size) {
        await req.storage.remove(req.part);
        throw oversize(req, `the stream ran past byte ${req.size}`);
      }
      await req.storage.append(req.part, chunk);
      have += chunk.length;
      counters.fetched += chunk.length;
      req.onEvent?.({ kind: "progress", model: req.model, version: req.version, bytes: have, total: req.size, resumed });
    };
    if (response.body === null) {
      await write(new Uint8Array(await response.arrayBuffer())); // React Native: no streams
      return;
    }
    const reader = response.body.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        throw networkError(err, `the download of package ${req.sha256.slice(0, 16)} at byte ${have}`);
      }
      if (next.done) break;
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), req.idleTimeoutMs);
      await write(next.value);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Fetch the package until `part` holds `size` bytes.
 *
 * @throws PocketMLError `unavailable` (network kept failing), `download_oversize`,
 *   `integrity_failed` (neither 200 nor 206), or the server's refusal (`not_found`, ...).
 */
export async function downloadPackage(req: DownloadRequest): Promise<DownloadResult> {
  if ((await req.storage.size(req.part)) === req.size) return { bytesFetched: 0, resumed: false, attempts: 0 };
  const counters = { fetched: 0, resumed: false };
  let attempts = 0;
  try {
    await withRetries(
      async () => {
        attempts += 1;
        await fetchOnce(req, counters);
        const size = (await req.storage.size(req.part)) ?? 0;
        if (size !== req.size)
          throw fail("unavailable", `the download of package ${req.sha256.slice(0, 16)} ended at ${size} of ${req.size} bytes`);
      },
      req.retries,
      req.backoff,
      req.random,
      req.sleep,
    );
  } catch (err) {
    const e = err instanceof PocketMLError ? err : networkError(err, "the download");
    const bytes = (await req.storage.size(req.part)) ?? 0;
    req.onEvent?.({
      kind: "failed",
      model: req.model,
      version: req.version,
      bytes,
      total: req.size,
      resumed: counters.resumed,
      error: `${e.code}: ${e.message}`,
    });
    throw e;
  }
  req.onEvent?.({ kind: "done", model: req.model, version: req.version, bytes: req.size, total: req.size, resumed: counters.resumed });
  return { bytesFetched: counters.fetched, resumed: counters.resumed, attempts };
}
