/**
 * HTTP for the device: the platform's `fetch` (Node 18+, browsers, React Native), a timeout
 * per call, pocketml's error answers turned into typed errors, retries with exponential
 * backoff and full jitter for what is worth retrying (network errors, timeouts, 408, 429,
 * 5xx; never another 4xx), and a circuit breaker for the cloud route.
 */
import { errorFromResponse, fail, isKind, PocketMLError } from "./errors.js";

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

/** Exponential backoff with jitter: attempt n waits between half and all of `min(cap, base * 2^n)`. */
export class Backoff {
  constructor(
    readonly baseMs = 50,
    readonly capMs = 1000,
  ) {}

  delayMs(attempt: number, random: () => number): number {
    const full = Math.min(this.capMs, this.baseMs * 2 ** attempt);
    return full / 2 + (random() * full) / 2;
  }
}

/**
 * Stops calling a failing cloud: open after `threshold` consecutive failures, let one probe
 * through after `cooldownMs`; the probe's success closes it, its failure re-opens it.
 */
export class CircuitBreaker {
  private failures = 0;
  private openedAt: number | null = null;
  private probing = false;

  constructor(
    readonly threshold = 5,
    readonly cooldownMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): "closed" | "open" | "half-open" {
    if (this.openedAt === null) return "closed";
    return this.probing || this.now() - this.openedAt >= this.cooldownMs ? "half-open" : "open";
  }

  allow(): boolean {
    if (this.openedAt === null) return true;
    if (this.probing || this.now() - this.openedAt < this.cooldownMs) return false;
    this.probing = true;
    return true;
  }

  recordSuccess(): void {
    this.failures = 0;
    this.openedAt = null;
    this.probing = false;
  }

  recordFailure(): void {
    this.failures += 1;
    if (this.probing || this.failures >= this.threshold) this.openedAt = this.now();
    this.probing = false;
  }
}

/** True for failures a retry may fix: network errors, timeouts, 408, 429 and 5xx. */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof PocketMLError)) return false;
  if (isKind(err, "unavailable")) return true;
  return err.status === 408 || err.status === 429;
}

/** A network failure or timeout, as the typed error the SDK reports. */
export function networkError(err: unknown, what: string): PocketMLError {
  if (err instanceof PocketMLError) return err;
  const name = (err as { name?: string }).name;
  const reason = name === "TimeoutError" || name === "AbortError" ? "timed out" : `failed (${String((err as Error).message ?? err)})`;
  return fail("unavailable", `${what} ${reason}; the server is unreachable`, err);
}

/** `fetch` with a timeout; network failures become `unavailable`. */
export async function fetchWithTimeout(fetchFn: Fetch, url: string, init: RequestInit, timeoutMs: number, what: string): Promise<Response> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    return await fetchFn(url, { ...init, signal: controller.signal });
  } catch (err) {
    throw networkError(err, what);
  } finally {
    clearTimeout(timer);
  }
}

/** Read a JSON answer of at most `limit` bytes; anything else is a `protocol_error`. */
export async function readJson(response: Response, what: string, limit = 16 << 20): Promise<unknown> {
  const length = Number(response.headers.get("content-length") ?? "0");
  if (length > limit) throw fail("protocol_error", `${what} answered ${length} bytes; at most ${limit} are read`);
  const text = await response.text();
  if (text.length > limit) throw fail("protocol_error", `${what} answered more than ${limit} bytes`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fail("protocol_error", `${what} answered something that is not JSON`, err);
  }
}

/** Turn a non-2xx answer into its typed error (reading the pocketml error body if any). */
export async function answerError(response: Response, what: string): Promise<PocketMLError> {
  let body: unknown = null;
  try {
    body = JSON.parse(await response.text()) as unknown;
  } catch {
    body = null;
  }
  return errorFromResponse(response.status, body, what);
}

/** Run `call` with up to `retries` retries of retryable failures, backoff between them. */
export async function withRetries<T>(
  call: () => Promise<T>,
  retries: number,
  backoff: Backoff,
  random: () => number,
  sleep: (ms: number) => Promise<void>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= retries || !isRetryable(err)) throw err;
      await sleep(backoff.delayMs(attempt, random));
    }
  }
}
