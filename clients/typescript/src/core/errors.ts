/**
 * Typed errors whose `code` values are pocketml's own (one home per noun: the table is
 * generated from the Python catalog into `errors.generated.ts`). A client catches one
 * `PocketMLError` and branches on `code`, or asks `isKind(err, "integrity_failed")` to treat
 * every package refusal alike, exactly as Python code catches `IntegrityError`.
 */
import { ERROR_KINDS, TRANSPORT_CODES } from "./errors.generated.js";

export { ERROR_KINDS, TRANSPORT_CODES };
export type ErrorCode = keyof typeof ERROR_KINDS;

/** Every failure the SDK reports. `code` is a pocketml error code; `status` the HTTP one. */
export class PocketMLError extends Error {
  readonly code: ErrorCode;
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { status?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = ERROR_KINDS[code].name;
    this.status = options?.status;
  }
}

/** True when `err` is a PocketMLError of `code` or of a code below it (its subclasses). */
export function isKind(err: unknown, code: ErrorCode): boolean {
  if (!(err instanceof PocketMLError)) return false;
  let current: ErrorCode | null = err.code;
  while (current !== null) {
    if (current === code) return true;
    current = ERROR_KINDS[current].parent;
  }
  return false;
}

/** Shorthand used across the SDK. */
export function fail(code: ErrorCode, message: string, cause?: unknown): PocketMLError {
  return new PocketMLError(code, message, { cause });
}

/**
 * The error of an HTTP error answer: the body's code when the SDK knows it, else the first
 * catalog code of the status (5xx: `server_error`, an `unavailable`: retry later).
 */
export function errorFromResponse(status: number, body: unknown, what: string): PocketMLError {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const sent = typeof error?.code === "string" ? error.code : undefined;
  const message = `${what} answered HTTP ${status}${typeof error?.message === "string" ? `: ${error.message}` : ""}`;
  if (status >= 500) {
    const code = sent === "unavailable" ? "unavailable" : "server_error";
    return new PocketMLError(code, message, { status });
  }
  if (sent !== undefined && sent in ERROR_KINDS) {
    return new PocketMLError(sent as ErrorCode, message, { status });
  }
  if (sent !== undefined && sent in TRANSPORT_CODES) {
    return new PocketMLError(TRANSPORT_CODES[sent as keyof typeof TRANSPORT_CODES], message, {
      status,
    });
  }
  const byStatus = (Object.keys(ERROR_KINDS) as ErrorCode[]).find((code) => ERROR_KINDS[code].status === status);
  return new PocketMLError(byStatus ?? "pocketml_error", message, { status });
}
