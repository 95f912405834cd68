import type { IncomingMessage, ServerResponse } from "node:http";
import { sendError } from "../common/http.js";
import { toBackpackError, type ErrorCode } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { ServiceRing } from "../ring/service-ring.js";
import type { MaintenanceTurn } from "./maintenance-turn.js";
import type { Store } from "../storage/types.js";
import type { LiveSettings } from "../cluster/settings.js";
import type { NodeConfig } from "./config.js";
import type { IdleWatch } from "../common/idle-watch.js";
import type { NodeStats, RefusalReason } from "./node-stats.js";
import type { UploadGate } from "./upload-gate.js";

/** What the handlers share: built once by the service, passed to every request. */
export interface NodeContext {
  readonly config: Readonly<NodeConfig>;
  readonly store: Store;
  readonly stats: NodeStats;
  readonly gate: UploadGate;
  /** The body timeout of uploads in flight (one sweep for all of them). */
  readonly idle: IdleWatch;
  readonly log: Logger;
  /** The write token as bytes, or undefined when writes are open. */
  readonly token: Buffer | undefined;
  /** Clock for durations (ms, monotonic); injected so tests and benchmarks can read it. */
  readonly now: () => number;
  /** Set when the node came back after longer than its tombstone grace period: why repair must not merge it. */
  readonly awayTooLong: string | undefined;
  /** The node's ring membership (`GET /ring`); off when the config has no ring. */
  readonly ring: ServiceRing;
  /** When this node may compact or scrub (one node of a shard at a time, on the ring's tick). */
  readonly turn: MaintenanceTurn;
  /** The cluster's runtime settings as this node applied them (over the ring, or from a coordinator). */
  readonly settings: LiveSettings;
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
  HEADERS_TOO_LARGE: "bad_request",
  SHUTTING_DOWN: "shutting_down",
  PRECONDITION_FAILED: "precondition",
  STALE_VERSION: "stale_version",
};

/**
 * Answers an error as JSON `{"error","code"}` and counts it. When the request body was not read to its end
 * (a refused or conditional upload answered early), the rest is read and dropped if its declared length is at
 * most DRAIN_MAX_BYTES, within the body timeout: the client, still sending, then gets the answer and keeps
 * its connection. A longer or chunked rest closes the connection after the answer instead (reading it only to
 * throw it away would let a client make the node swallow any amount of bytes); a client still sending may
 * then see the connection reset before it reads the answer.
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
  if (!req.complete && !res.headersSent) {
    if (drainable(req)) drainAfterAnswer(req, res, ctx.config.bodyTimeoutMs);
    else res.setHeader("connection", "close");
  }
  sendError(res, e, ctx.log);
}

/** The most of a refused body the node reads and drops so that its answer arrives (see `respondError`). */
const DRAIN_MAX_BYTES = 4 * 1024 * 1024;

function drainable(req: IncomingMessage): boolean {
  const declared = Number(req.headers["content-length"]);
  return req.headers["transfer-encoding"] === undefined && declared <= DRAIN_MAX_BYTES;
}

/** Drops the rest of the body once the answer is out; a client that stops sending is cut off. */
function drainAfterAnswer(req: IncomingMessage, res: ServerResponse, timeoutMs: number): void {
  res.once("finish", () => {
    if (req.complete) return;
    const timer = setTimeout(() => req.socket.destroy(), timeoutMs);
    const done = (): void => clearTimeout(timer);
    req.once("end", done);
    req.once("close", done);
    req.resume();
  });
}
