/**
 * The one error type of backpack. Every failure that crosses a boundary (HTTP answer, command exit) carries a
 * stable `code`; programs branch on `err.code`, never on the message. The table maps each code to the HTTP
 * status it is answered with, checked by the compiler.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  INVALID_KEY: 400,
  INVALID_ARGUMENT: 400,
  BAD_CHECKSUM_HEADER: 400,
  /** A batch of writes whose framing is broken (cut short, a header that fails its CRC): refused whole. */
  BAD_FRAME: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  /** A targeted upload (`X-Backpack-Shard`) names a shard the cluster map does not have. */
  NO_SUCH_SHARD: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  CONFLICT: 409,
  /** A write, copy or delete older than (or the same as) the version the node holds: refused, nothing written. */
  STALE_VERSION: 409,
  /** A node back after longer than its tombstone grace period: not merged by repair until an operator resets it. */
  AWAY_TOO_LONG: 409,
  ALREADY_EXISTS: 409,
  /** A targeted upload names a shard that is disabled (read-only), has no servers, or has no room for it. */
  SHARD_UNAVAILABLE: 409,
  LENGTH_REQUIRED: 411,
  PRECONDITION_FAILED: 412,
  BODY_TOO_LARGE: 413,
  RANGE_NOT_SATISFIABLE: 416,
  /** A client over its request rate (the cluster's runtime settings): retry after `Retry-After` seconds. */
  RATE_LIMITED: 429,
  HEADERS_TOO_LARGE: 431,
  CLIENT_ABORTED: 499,
  INTERNAL: 500,
  /** A stored record failed its checksum: answered 502 so a proxy (the nginx recipe) tries the next replica. */
  CHECKSUM_MISMATCH: 502,
  UPSTREAM_FAILED: 502,
  OVERLOADED: 503,
  UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  NOT_INITIALIZED: 503,
  UPSTREAM_TIMEOUT: 504,
  NO_SPACE: 507,
  NO_WRITABLE_SHARDS: 507,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface BackpackErrorOptions {
  cause?: unknown;
  /** Extra fields that are safe to show to a client (added to the JSON error body). */
  details?: Record<string, unknown>;
  /** Seconds a client should wait before retrying (answered as `Retry-After`). */
  retryAfterSec?: number;
}

export class BackpackError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  readonly retryAfterSec: number | undefined;

  constructor(code: ErrorCode, message: string, options: BackpackErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BackpackError";
    this.code = code;
    this.details = options.details;
    this.retryAfterSec = options.retryAfterSec;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  toJSON(): { error: string; code: ErrorCode } & Record<string, unknown> {
    return { ...this.details, error: this.message, code: this.code };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(ERROR_STATUS, value);
}

/** True when `err` is a BackpackError (or looks like one, e.g. after crossing a realm) with that code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}

/** Any thrown value as a BackpackError; unexpected ones become INTERNAL with the original as `cause`. */
export function toBackpackError(err: unknown): BackpackError {
  if (err instanceof BackpackError) return err;
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; message?: unknown };
    if (isErrorCode(e.code) && typeof e.message === "string") {
      return new BackpackError(e.code, e.message, { cause: err });
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new BackpackError("INTERNAL", `internal error: ${message}`, { cause: err });
}

/** Node's system error code (`ENOENT`, `ECONNREFUSED`, ...) of a thrown value, if any. */
export function systemCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}
