import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { BackpackError, toBackpackError } from "./errors.js";
import type { Logger } from "./logger.js";

/**
 * On a node's GET: the read is background work (a replicator copying or repairing a file), and the node does
 * not keep the body in its read cache for it.
 */
export const BACKGROUND_READ_HEADER = "x-backpack-background";

/**
 * Answers JSON with a fitting Content-Length. The body ends with a newline, as text answers do, so that a
 * shell prompt after `curl` starts on a line of its own.
 */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  // Encoded into a Buffer here: handing node:http the string instead measured about 1 ms more per answer of
  // ~250 KB (a listing page), both ends counted.
  const data = Buffer.from(JSON.stringify(body) + "\n");
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": data.length,
    ...headers,
  });
  res.end(data);
}

/**
 * Answers an error as `{"error":"<message>","code":"<CODE>"}`. Unexpected errors become INTERNAL and are
 * logged here, once, with their cause; expected ones are not logged (the caller counts them).
 */
export function sendError(res: ServerResponse, err: unknown, log?: Logger): void {
  const e = toBackpackError(err);
  if (e.code === "INTERNAL") log?.error({ err: e.cause ?? e }, "internal error");
  if (res.headersSent) {
    // Too late for a status line: cut the response so the client sees a broken transfer, not bad bytes.
    res.destroy(e);
    return;
  }
  const headers: Record<string, string> = {};
  if (e.retryAfterSec !== undefined) headers["retry-after"] = String(e.retryAfterSec);
  if (e.status === 503 || e.status === 413 || e.status === 408) headers.connection = "close";
  sendJson(res, e.status, e.toJSON(), headers);
}

/** Listens on host:port (port 0 picks a free one) and returns the real base URL. */
export async function listen(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  }).catch((err: unknown) => {
    const code = (err as { code?: string }).code;
    if (code === "EADDRINUSE") {
      throw new BackpackError("UNAVAILABLE", `${host}:${port} is already in use`, { cause: err });
    }
    throw err;
  });
  const addr = server.address() as AddressInfo;
  const h = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return `http://${h}:${addr.port}`;
}

/**
 * Stops accepting connections, lets in-flight requests finish for up to `graceMs`, then destroys what is
 * left. Idle keep-alive connections are closed at once.
 */
export async function closeServer(server: Server, graceMs = 5000): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), graceMs);
  timer.unref();
  await closed;
  clearTimeout(timer);
}

/** Reads a whole (small) request body, refusing more than `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxBytes) {
    throw new BackpackError("BODY_TOO_LARGE", `body is larger than ${maxBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) throw new BackpackError("BODY_TOO_LARGE", `body is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** Parses a JSON body, answering BAD_REQUEST for anything that is not JSON. */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const body = await readBody(req, maxBytes);
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch (err) {
    throw new BackpackError("BAD_REQUEST", "body is not valid JSON", { cause: err });
  }
}

/** Longest `Content-Type` an upload may carry (it is stored with the file and answered on GET). */
export const MAX_CONTENT_TYPE_CHARS = 255;

/** Refuses (400 BAD_REQUEST) an upload whose `Content-Type` is longer than nodes store. */
export function checkContentType(req: IncomingMessage): void {
  const type = req.headers["content-type"];
  if (type !== undefined && type.length > MAX_CONTENT_TYPE_CHARS) {
    throw new BackpackError(
      "BAD_REQUEST",
      `Content-Type is longer than ${MAX_CONTENT_TYPE_CHARS} characters`,
    );
  }
}

/**
 * Bearer-token check in constant time; `expected` undefined means writes are open. The scheme is
 * case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are `Bearer`.
 */
export function checkBearer(
  req: IncomingMessage,
  expected: Buffer | undefined,
  what: { action: string; token: string } = { action: "writes", token: "write token" },
): void {
  if (expected === undefined) return;
  const header = req.headers.authorization ?? "";
  const m = /^bearer[ \t]+(\S(?:.*\S)?)[ \t]*$/i.exec(header);
  if (!m?.[1])
    throw new BackpackError(
      "UNAUTHORIZED",
      `this server needs Authorization: Bearer <token> for ${what.action}`,
    );
  if (!constantTimeEqual(Buffer.from(m[1], "utf8"), expected)) {
    throw new BackpackError("FORBIDDEN", `the ${what.token} is not valid`);
  }
}

function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  // Hash both sides so lengths never leak through an early return.
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

const dateCache = new Map<number, string>();

/**
 * An HTTP date (`Last-Modified`, `If-Unmodified-Since`) for a time in ms, to the second. Formatting a date costs
 * more than a 1 KiB read from the page cache: the texts of the last few seconds are remembered.
 */
export function httpDate(ms: number): string {
  const sec = Math.floor(ms / 1000);
  let text = dateCache.get(sec);
  if (text === undefined) {
    text = new Date(sec * 1000).toUTCString();
    if (dateCache.size >= 1024) dateCache.clear();
    dateCache.set(sec, text);
  }
  return text;
}
