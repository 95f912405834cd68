import type { IncomingMessage, ServerResponse } from "node:http";
import { sendError } from "../common/http.js";
import { toBackpackError, type ErrorCode } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { Store } from "../storage/types.js";
import type { NodeConfig } from "./config.js";
import type { NodeStats, RefusalReason } from "./node-stats.js";
import type { RecentDeletes } from "./recent-deletes.js";
import type { UploadGate } from "./upload-gate.js";

/** What the handlers share: built once by the service, passed to every request. */
export interface NodeContext {
  readonly config: Readonly<NodeConfig>;
  readonly store: Store;
  readonly stats: NodeStats;
  readonly gate: UploadGate;
  /** When keys were deleted here lately (conditional writes count a delete as a change). */
  readonly deletes: RecentDeletes;
  readonly log: Logger;
  /** The write token as bytes, or undefined when writes are open. */
  readonly token: Buffer | undefined;
  /** Clock for durations (ms, monotonic); injected so tests and benchmarks can read it. */
  readonly now: () => number;
}

const REASONS: Partial<Record<ErrorCode, RefusalReason>> = {
  OVERLOADED: "overloaded",
  BODY_TOO_LARGE: "too_large",
  REQUEST_TIMEOUT: "timeout",
  CLIENT_ABORTED: "aborted",
  UNAUTHORIZED: "unauthorized",
  FORBIDDEN: "unauthorized",
  INVALID_KEY: "invalid_key",
  BAD_REQUEST: "bad_request",
  BAD_CHECKSUM_HEADER: "bad_request",
  SHUTTING_DOWN: "shutting_down",
  PRECONDITION_FAILED: "precondition",
};

/**
 * Answers an error as JSON `{"error","code"}` and counts it. When the request body was not read to its end,
 * the connection is closed after the answer (reading the rest only to throw it away would let a client make
 * the node swallow any amount of bytes).
 */
export function respondError(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  err: unknown,
): void {
  const e = toBackpackError(err);
  if (e.code === "NOT_FOUND") ctx.stats.notFound++;
  else {
    const reason = REASONS[e.code];
    if (reason) ctx.stats.refused[reason]++;
  }
  if (e.code === "CLIENT_ABORTED" || res.destroyed) {
    // Nobody is listening any more: nothing to answer.
    if (!res.destroyed) res.destroy();
    return;
  }
  if (!req.complete && !res.headersSent) res.setHeader("connection", "close");
  sendError(res, e, ctx.log);
}
