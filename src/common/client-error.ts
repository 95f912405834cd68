import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { ErrorCode } from "./errors.js";

/** Header fields a request may carry; more is answered 431 like headers over the size limit. */
export const MAX_HEADER_FIELDS = 1000;
/** Bytes of request headers a server takes (Node's default, set explicitly on every server). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** What a refusal of the HTTP parser was, for counters: `bad_request`, `too_large` (headers) or `timeout`. */
export type ClientErrorKind = "bad_request" | "headers_too_large" | "timeout";

/**
 * Answers the requests that the HTTP parser refuses (a malformed request line or header, headers over the size
 * limit, headers not received in time) with the same JSON error shape as every other answer, then closes the
 * connection; a connection already reset is just closed.
 *
 * A request refused on a connection whose previous request is still being answered (a valid PUT followed by
 * garbage, pipelined) must not get its refusal ahead of that answer, which would read as the answer to the
 * PUT: the refusal waits until the pending answer is sent. `track` remembers each connection's latest
 * request for that (one WeakMap entry per request, no listener, no closure). Bad bytes inside a request's
 * own body (a broken chunked frame) are that request's: it gets the refusal, if nothing of its answer went out
 * yet, and the connection is closed, which ends its handler.
 */
export class ClientErrors {
  private readonly latest = new WeakMap<Duplex, ServerResponse>();
  /** Connections already refused: the parser reports its error again for every later piece of data. */
  private readonly refused = new WeakSet<Duplex>();

  constructor(private readonly onRefused: (kind: ClientErrorKind) => void = () => undefined) {}

  /** Call for every request the server dispatches. */
  track(res: ServerResponse): void {
    this.latest.set(res.req.socket, res);
  }

  /** The server's `clientError` listener. */
  readonly handle = (err: Error & { code?: string }, socket: Duplex): void => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    if (this.refused.has(socket)) return;
    this.refused.add(socket);
    const answer = refusalOf(err);
    this.onRefused(answer.kind);
    const pending = this.latest.get(socket);
    if (pending && !pending.req.complete) {
      if (pending.headersSent) socket.destroy();
      else socket.end(answer.text, () => socket.destroy());
      return;
    }
    if (pending && !pending.writableFinished && !pending.destroyed) {
      // Sent once the answer before it is out; if that closes the connection, the refusal is moot.
      const send = (): void => {
        if (socket.writable) socket.end(answer.text);
        else socket.destroy();
      };
      pending.once("finish", send);
      pending.once("close", () => {
        if (!pending.writableFinished) socket.destroy();
      });
      return;
    }
    socket.end(answer.text);
  };
}

/** Too many header fields: the same answer as headers over the size limit. */
export function tooManyHeaders(req: IncomingMessage): boolean {
  return req.rawHeaders.length > 2 * MAX_HEADER_FIELDS;
}

function refusalOf(err: Error & { code?: string }): { kind: ClientErrorKind; text: string } {
  if (err.code === "HPE_HEADER_OVERFLOW") {
    return {
      kind: "headers_too_large",
      text: rawAnswer(431, "HEADERS_TOO_LARGE", "request headers are too large"),
    };
  }
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    return {
      kind: "timeout",
      text: rawAnswer(408, "REQUEST_TIMEOUT", "request headers were not received in time"),
    };
  }
  return { kind: "bad_request", text: rawAnswer(400, "BAD_REQUEST", "malformed HTTP request") };
}

/** A whole HTTP/1.1 answer as text, for a socket the HTTP server no longer writes to. */
function rawAnswer(status: number, code: ErrorCode, message: string): string {
  const body = JSON.stringify({ error: message, code }) + "\n";
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n` +
    "content-type: application/json; charset=utf-8\r\n" +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    "connection: close\r\n\r\n" +
    body
  );
}
