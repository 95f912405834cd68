import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { etagOf, formatChecksum } from "../common/checksum.js";
import { BackpackError, hasCode } from "../common/errors.js";
import { BACKGROUND_READ_HEADER, httpDate } from "../common/http.js";
import { DAMAGED_HEADER, formatVersion, VERSION_HEADER } from "../common/version.js";
import type { ObjectInfo, ReadableBody } from "../storage/types.js";
import { ifRangeHolds, isNotModified, type Validators } from "./conditional.js";
import type { NodeContext } from "./context.js";
import { contentRange, parseRange } from "./range.js";

const OCTET_STREAM = "application/octet-stream";

/**
 * GET and HEAD of a key. A plain GET goes straight to one store read (index lookup + one positioned read) and,
 * for a small record, answers without a promise; the metadata-only paths (HEAD, conditional and range
 * requests) first look at the index, which costs no I/O. Errors are thrown (synchronously or as a rejection).
 */
export function handleRead(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
  head: boolean,
): void | Promise<void> {
  const started = ctx.now();
  const h = req.headers;
  if (
    head ||
    h.range !== undefined ||
    h["if-none-match"] !== undefined ||
    h["if-modified-since"] !== undefined
  ) {
    return readWithConditions(ctx, req, res, key, head, started);
  }
  return serve(ctx, res, key, undefined, started, background(req));
}

/** Whether the request says it is background work (its body then stays out of the read cache). */
function background(req: IncomingMessage): boolean {
  return req.headers[BACKGROUND_READ_HEADER] === "1";
}

async function readWithConditions(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
  head: boolean,
  started: number,
): Promise<void> {
  const h = req.headers;
  const info = ctx.store.stat(key);
  if (info === undefined) throw absent(ctx, res, key);
  const v = validators(info);
  if (isNotModified({ ifNoneMatch: h["if-none-match"], ifModifiedSince: h["if-modified-since"] }, v)) {
    ctx.stats.notModified++;
    res.writeHead(304, {
      etag: v.etag,
      "last-modified": httpDate(info.writeTime),
      "x-backpack-checksum": formatChecksum(info.bodyCrc),
      [VERSION_HEADER]: formatVersion(info.version),
    });
    res.end();
    return;
  }
  const range = ifRangeHolds(single(h["if-range"]), v) ? parseRange(h.range, info.size) : undefined;
  if (range === "unsatisfiable") {
    res.setHeader("content-range", `bytes */${info.size}`);
    // The version this answer is about (a coordinator checks it like any answer's).
    res.setHeader(VERSION_HEADER, formatVersion(info.version));
    throw new BackpackError("RANGE_NOT_SATISFIABLE", `range ${h.range ?? ""} is outside the body`, {
      details: { size: info.size },
    });
  }
  if (head) {
    res.writeHead(range ? 206 : 200, headersOf(info, range));
    res.end();
    return;
  }
  await serve(ctx, res, key, range, started, background(req));
}

type Range = { start: number; end: number } | undefined;

/** Reads the record and sends it: a small record is read, verified and sent synchronously. */
function serve(
  ctx: NodeContext,
  res: ServerResponse,
  key: string,
  range: Range,
  started: number,
  background: boolean,
): void | Promise<void> {
  let read;
  try {
    read = ctx.store.readSmall(key, range, { background });
  } catch (err) {
    throw readFailed(ctx, res, key, err);
  }
  if (read instanceof Promise) {
    return read.then(
      (r) => send(ctx, res, key, range, r, started),
      (err: unknown) => {
        throw readFailed(ctx, res, key, err);
      },
    );
  }
  return send(ctx, res, key, range, read, started);
}

/** The error a failed read answers with (a failed checksum is logged and counted: it answers 502). */
function readFailed(ctx: NodeContext, res: ServerResponse, key: string, err: unknown): unknown {
  if (hasCode(err, "NOT_FOUND")) return absent(ctx, res, key);
  noteMismatch(ctx, key, err, "answered 502");
  return err;
}

/** Logs and counts a record that failed its checksum; `outcome` says what the client got. */
function noteMismatch(ctx: NodeContext, key: string, err: unknown, outcome: string): void {
  if (!hasCode(err, "CHECKSUM_MISMATCH")) return;
  ctx.stats.refused.checksum_mismatch++;
  ctx.log.error({ key, err }, `stored record failed its checksum; ${outcome}`);
}

function send(
  ctx: NodeContext,
  res: ServerResponse,
  key: string,
  range: Range,
  read: { info: ObjectInfo; body: ReadableBody },
  started: number,
): void | Promise<void> {
  const { info, body } = read;
  if (range && range.end > info.size) range = { start: range.start, end: info.size }; // overwritten meanwhile
  if (body.kind === "buffer") {
    res.writeHead(range ? 206 : 200, range ? headersOf(info, range) : wholeBodyHeaders(info, body.data));
    res.end(body.data);
    ctx.stats.observeGet(body.data.length, ctx.now() - started);
    return;
  }
  return sendStream(ctx, res, key, range, info, body, started);
}

async function sendStream(
  ctx: NodeContext,
  res: ServerResponse,
  key: string,
  range: Range,
  info: ObjectInfo,
  body: Extract<ReadableBody, { kind: "stream" }>,
  started: number,
): Promise<void> {
  // The first chunk comes before the headers: a record whose head fails verification still gets a clean 502.
  const it = body.stream[Symbol.asyncIterator]();
  let first: IteratorResult<Buffer>;
  try {
    first = await it.next();
  } catch (err) {
    throw readFailed(ctx, res, key, err);
  }
  res.writeHead(range ? 206 : 200, headersOf(info, range, body.length));
  try {
    await pipeline(rest(first, it), res);
  } catch (err) {
    // Headers are out: the only honest signal left is a cut transfer (the proxy retries elsewhere).
    res.destroy();
    noteMismatch(ctx, key, err, "the transfer was cut while streaming");
    return;
  }
  ctx.stats.observeGet(body.length, ctx.now() - started);
}

async function* rest(first: IteratorResult<Buffer>, it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  try {
    if (first.done) return;
    yield first.value;
    for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
  } finally {
    // Stopped early (client gone): let the store release the volume file.
    await it.return?.();
  }
}

/**
 * The answer headers of a whole body, kept per body buffer. A hot record comes from the store's read cache as
 * the same buffer on every read, and the bytes (and metadata) of a record never change, so its headers are
 * built once, not per request: formatting them and checking fresh strings cost a small GET more than the
 * lookup. A buffer read from disk gets an entry that goes with it.
 */
const headersByBody = new WeakMap<Buffer, OutgoingHttpHeaders>();

function wholeBodyHeaders(info: ObjectInfo, data: Buffer): OutgoingHttpHeaders {
  let headers = headersByBody.get(data);
  if (headers === undefined) {
    headers = headersOf(info, undefined, data.length);
    headersByBody.set(data, headers);
  }
  return headers;
}

function headersOf(
  info: ObjectInfo,
  range: { start: number; end: number } | undefined,
  length = range ? range.end - range.start : info.size,
): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    "content-length": length,
    "content-type": info.contentType ?? OCTET_STREAM,
    etag: etagOf(info.bodyCrc, info.size),
    "last-modified": httpDate(info.writeTime),
    "accept-ranges": "bytes",
    "x-backpack-checksum": formatChecksum(info.bodyCrc),
    [VERSION_HEADER]: formatVersion(info.version),
  };
  if (range) headers["content-range"] = contentRange(range, info.size);
  if (info.headers) Object.assign(headers, info.headers);
  // Only a HEAD gets this far with a damaged record (a read fails its checksum): it says so.
  if (info.damaged) headers[DAMAGED_HEADER] = "1";
  return headers;
}

/** The first value of a header that may repeat. */
export function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function validators(info: ObjectInfo): Validators {
  return { etag: etagOf(info.bodyCrc, info.size), modifiedMs: info.writeTime };
}

/** 404 for a key with no object; when a delete is remembered, its version goes in `X-Backpack-Version`. */
function absent(ctx: NodeContext, res: ServerResponse, key: string): BackpackError {
  const held = ctx.store.held(key);
  if (held?.deleted) res.setHeader(VERSION_HEADER, formatVersion(held.version));
  return notFound(key);
}

export function notFound(key: string): BackpackError {
  return new BackpackError("NOT_FOUND", `${key} was not found`);
}
