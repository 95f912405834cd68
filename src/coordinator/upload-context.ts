import type { IncomingMessage, ServerResponse } from "node:http";
import type { IdleWatch } from "../common/idle-watch.js";
import type { MemoryBudget } from "./memory-budget.js";

/** What every upload body is held to while the coordinator receives it, shared by all uploads. */
export interface UploadLimits {
  /** The body timeout (`--body-timeout`) and minimum rate (`--min-body-rate`). */
  watch: IdleWatch;
  /** Memory for bodies held whole (`--max-buffered`). */
  memory: MemoryBudget;
}

/** The limits of one upload, and the `100 Continue` it is owed once its body is first read. */
export interface UploadContext {
  readonly limits: UploadLimits;
  /** Sends `100 Continue` if the client asked for it and it was not sent yet; idempotent. */
  sendContinue(): void;
}

/**
 * Set by the service for each PUT before its handler runs, read by `BodySource` when it starts reading the
 * body: the body reader is where the limits apply, and the write handler passes it the request only. Keyed by
 * the request (a WeakMap: nothing to clean up).
 */
const contexts = new WeakMap<IncomingMessage, UploadContext>();

export function beginUpload(
  req: IncomingMessage,
  res: ServerResponse,
  limits: UploadLimits,
  expectContinue: boolean,
): void {
  let owed = expectContinue;
  contexts.set(req, {
    limits,
    sendContinue() {
      if (!owed) return;
      owed = false;
      // `100 Continue` only once the upload passed every check before its body (token, key, size, space).
      if (!res.headersSent && !res.destroyed) res.writeContinue();
    },
  });
}

export function uploadContextOf(req: IncomingMessage): UploadContext | undefined {
  return contexts.get(req);
}
