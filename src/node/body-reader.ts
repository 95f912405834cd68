import type { IncomingMessage } from "node:http";
import { BackpackError } from "../common/errors.js";
import type { IdleWatch } from "../common/idle-watch.js";

/** What every upload body is held to while it arrives. */
export interface BodyGuard {
  /** Refuse (BODY_TOO_LARGE) past this many bytes, also when no length was declared. */
  maxBytes: number;
  /**
   * The body timeout: how long the client may stay silent while the node waits for more of the body, and how
   * slowly it may send (a minimum rate over that time).
   */
  idle: IdleWatch;
  /** Called once when the client stayed silent or sent too slowly; answers 408 and lets the connection close. */
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
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    let total = 0;
    const watched = guard.idle.start(() => {
      guard.onIdle();
      finish(idleError());
    });
    const onData = (chunk: Buffer): void => {
      guard.idle.touch(watched);
      guard.idle.received(watched, chunk.length);
      total += chunk.length;
      if (first === undefined) first = chunk;
      else (more ??= [first]).push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    // A request cut off by its client is destroyed and closes: no 'error' listener is needed (the request
    // emits 'error' only to listeners).
    const onClose = (): void => {
      if (!req.complete) finish(aborted(undefined));
    };
    const finish = (err: Error | undefined): void => {
      guard.idle.stop(watched);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onClose);
      if (err) reject(err);
      // The parser enforces the declared length; anything else is a broken request.
      else if (total !== declared) reject(aborted(undefined));
      else resolve(more ? Buffer.concat(more, total) : (first ?? Buffer.alloc(0)));
    };
    req.on("data", onData);
    req.on("end", onEnd);
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
  let idle = false;
  const watched = guard.idle.start(() => {
    idle = true;
    guard.onIdle();
  });
  try {
    for (;;) {
      // The clock runs only while waiting on the client, not while the store takes the last chunk.
      guard.idle.touch(watched);
      let next: IteratorResult<unknown>;
      try {
        next = await it.next();
      } catch (err) {
        throw idle ? idleError() : aborted(err);
      }
      guard.idle.pause(watched);
      if (idle) throw idleError();
      if (next.done) break;
      const chunk = next.value as Buffer;
      guard.idle.received(watched, chunk.length);
      total += chunk.length;
      if (total > guard.maxBytes) throw tooLarge(guard.maxBytes);
      if (guard.grow && !guard.grow(chunk.length)) {
        throw new BackpackError("OVERLOADED", "too many upload bytes in flight, retry shortly", {
          retryAfterSec: 1,
        });
      }
      yield chunk;
    }
  } finally {
    guard.idle.stop(watched);
  }
  if (!req.complete) throw aborted(undefined);
}

/** The error of a body whose client stayed silent past the body timeout, or sent it under the minimum rate. */
export function idleError(): BackpackError {
  return new BackpackError("REQUEST_TIMEOUT", "the client stopped sending the body, or sent it too slowly");
}

function aborted(cause: unknown): BackpackError {
  return new BackpackError("CLIENT_ABORTED", "the client went away before the body was complete", { cause });
}
