import type { IncomingMessage } from "node:http";
import { BackpackError } from "../common/errors.js";

/** What every upload body is held to while it arrives. */
export interface BodyGuard {
  /** Refuse (BODY_TOO_LARGE) past this many bytes, also when no length was declared. */
  maxBytes: number;
  /** Time allowed waiting for the next piece of the body (not counting time spent storing the last one). */
  idleMs: number;
  /** Called once when the client stayed silent for `idleMs`; answers 408 and lets the connection close. */
  onIdle: () => void;
  /** For a chunked body: reserve more in-flight bytes as they arrive; false refuses with OVERLOADED. */
  grow?: (bytes: number) => boolean;
}

export function tooLarge(maxBytes: number): BackpackError {
  return new BackpackError("BODY_TOO_LARGE", `body is larger than the limit of ${maxBytes} bytes`, {
    details: { limit: maxBytes },
  });
}

/**
 * Reads a small body with a declared length into one Buffer (the hot path of 1 KiB uploads: one chunk, no
 * async iteration). Rejects when the client goes away or stalls.
 */
export function readWhole(req: IncomingMessage, declared: number, guard: BodyGuard): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const timer = setTimeout(() => {
      guard.onIdle();
      finish(new BackpackError("REQUEST_TIMEOUT", "the client stopped sending the body"));
    }, guard.idleMs);
    const onData = (chunk: Buffer): void => {
      timer.refresh();
      total += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (err: Error): void => finish(aborted(err));
    const onClose = (): void => {
      if (!req.complete) finish(aborted(undefined));
    };
    const finish = (err: Error | undefined): void => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (err) reject(err);
      // The parser enforces the declared length; anything else is a broken request.
      else if (total !== declared) reject(aborted(undefined));
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/**
 * A body as a stream of chunks for the store, checked as it flows: size limit, in-flight bytes, idle time.
 * The request is read only as fast as the store takes it (backpressure), and the idle clock runs only while
 * waiting on the client.
 */
export async function* streamBody(req: IncomingMessage, guard: BodyGuard): AsyncGenerator<Buffer> {
  // destroyOnReturn false: when this generator stops early (limit hit), the socket must stay open long enough
  // to carry the error answer.
  const it = req.iterator({ destroyOnReturn: false })[Symbol.asyncIterator]();
  let total = 0;
  for (;;) {
    let idle = false;
    const timer = setTimeout(() => {
      idle = true;
      guard.onIdle();
    }, guard.idleMs);
    let next: IteratorResult<unknown>;
    try {
      next = await it.next();
    } catch (err) {
      throw idle ? new BackpackError("REQUEST_TIMEOUT", "the client stopped sending the body") : aborted(err);
    } finally {
      clearTimeout(timer);
    }
    if (idle) throw new BackpackError("REQUEST_TIMEOUT", "the client stopped sending the body");
    if (next.done) break;
    const chunk = next.value as Buffer;
    total += chunk.length;
    if (total > guard.maxBytes) throw tooLarge(guard.maxBytes);
    if (guard.grow && !guard.grow(chunk.length)) {
      throw new BackpackError("OVERLOADED", "too many upload bytes in flight, retry shortly", {
        retryAfterSec: 1,
      });
    }
    yield chunk;
  }
  if (!req.complete) throw aborted(undefined);
}

function aborted(cause: unknown): BackpackError {
  return new BackpackError("CLIENT_ABORTED", "the client went away before the body was complete", { cause });
}
