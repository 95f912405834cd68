import type { IncomingMessage, ServerResponse } from "node:http";
import { etagOf, expectedChecksum, formatChecksum } from "../common/checksum.js";
import { BackpackError, hasCode, toBackpackError } from "../common/errors.js";
import {
  formatVersion,
  parseVersion,
  VERSION_HEADER,
  versionTimeMs,
  type Version,
} from "../common/version.js";
import { checkBearer, sendError } from "../common/http.js";
import { pickStoredHeaders } from "../common/stored-headers.js";
import { idleError, readWhole, streamBody, tooLarge, type BodyGuard } from "./body-reader.js";
import type { NodeContext } from "./context.js";
import { writePreconditionFails } from "./conditional.js";
import { notFound, single } from "./read-handler.js";

/** Bodies up to this size with a declared length are read into one Buffer before the store sees them. */
const WHOLE_BODY_BYTES = 64 * 1024;
const MAX_CONTENT_TYPE_CHARS = 255;

/**
 * PUT of a key: authorised, admitted (in-flight bounds), limited in size and idle time, then stored; answers
 * 201 only once the store reports the body durable. Any failure leaves nothing indexed.
 */
export async function handlePut(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
  expectContinue: boolean,
): Promise<void> {
  const started = ctx.now();
  checkBearer(req, ctx.token);
  const { maxBodyBytes } = ctx.config;
  const lengthHeader = req.headers["content-length"];
  const chunked = req.headers["transfer-encoding"] !== undefined;
  // No length and not chunked: an empty body (HTTP/1.1 §6.3). The parser has already checked the syntax.
  const declared = chunked ? undefined : lengthHeader === undefined ? 0 : Number(lengthHeader);
  if (declared !== undefined && declared > maxBodyBytes) throw tooLarge(maxBodyBytes);
  const expectedCrc = expectedChecksum(req.headers["x-backpack-checksum"]);
  const version = requestVersion(req);
  const contentType = req.headers["content-type"];
  if (contentType !== undefined && contentType.length > MAX_CONTENT_TYPE_CHARS) {
    throw new BackpackError(
      "BAD_REQUEST",
      `Content-Type is longer than ${MAX_CONTENT_TYPE_CHARS} characters`,
    );
  }
  const headers = pickStoredHeaders(req.headers);

  let reserved = declared ?? 0;
  if (!ctx.gate.tryEnter(reserved)) {
    throw new BackpackError("OVERLOADED", "too many uploads in flight, retry shortly", { retryAfterSec: 1 });
  }
  const whole = declared !== undefined && declared <= WHOLE_BODY_BYTES;
  // A streamed body can be cut short (client gone, idle): the store must then stop and index nothing. A small
  // body is complete before the store sees it, so it needs no abort plumbing (the hot path of 1 KiB PUTs).
  const abort = whole ? undefined : new AbortController();
  const guard: BodyGuard = {
    maxBytes: maxBodyBytes,
    idle: ctx.idle,
    onIdle: () => {
      const err = idleError();
      abort?.abort(err);
      // Answer now: the socket closes after it, which ends the pending read of the body.
      ctx.stats.refused.timeout++;
      if (!res.headersSent && !res.destroyed) {
        res.setHeader("connection", "close");
        sendError(res, err, ctx.log);
      }
    },
    grow:
      declared === undefined
        ? (n) => {
            if (!ctx.gate.tryGrow(n)) return false;
            reserved += n;
            return true;
          }
        : undefined,
  };
  const onClose = (): void => {
    if (!req.complete) abort?.abort(new BackpackError("CLIENT_ABORTED", "the client went away"));
  };
  if (abort) req.once("close", onClose);
  try {
    // A small body is read first, so that a refused write still leaves the connection usable.
    if (!whole) checkWriteConditions(ctx, req, res, key);
    if (expectContinue) res.writeContinue();
    const body = whole ? await readWhole(req, declared, guard) : streamBody(req, guard);
    if (whole) checkWriteConditions(ctx, req, res, key);
    const info = await ctx.store.put(key, body, {
      size: declared,
      maxBytes: maxBodyBytes,
      contentType,
      headers,
      expectedCrc,
      version,
      signal: abort?.signal,
    });
    res.writeHead(201, {
      etag: etagOf(info.bodyCrc, info.size),
      "x-backpack-checksum": formatChecksum(info.bodyCrc),
      [VERSION_HEADER]: formatVersion(info.version),
      "content-length": 0,
    });
    res.end();
    ctx.stats.observePut(info.size, ctx.now() - started);
  } catch (err) {
    if (res.headersSent) return; // already answered (idle timeout)
    // The abort reason names what really happened; the store may only have seen "aborted".
    throw abort?.signal.aborted ? toBackpackError(abort.signal.reason) : withHeldVersion(res, err);
  } finally {
    if (abort) req.off("close", onClose);
    ctx.gate.leave(reserved);
  }
}

/**
 * DELETE of a key: authorised; 204 once the tombstone is durable (with the removed object's size), 404 when
 * there was no object. With `X-Backpack-Version` the tombstone is written in both cases (a copy still on its
 * way must not bring the file back), and a node holding that version or a newer one answers 409.
 */
export async function handleDelete(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
): Promise<void> {
  const started = ctx.now();
  checkBearer(req, ctx.token);
  const version = requestVersion(req);
  checkWriteConditions(ctx, req, res, key);
  const size = ctx.store.stat(key)?.size;
  let deleted: boolean;
  try {
    deleted = await ctx.store.delete(key, { version });
  } catch (err) {
    throw withHeldVersion(res, err);
  }
  const held = ctx.store.held(key);
  if (held) res.setHeader(VERSION_HEADER, formatVersion(held.version));
  if (!deleted) throw notFound(key);
  res.writeHead(204, size === undefined ? {} : { "x-backpack-size": size });
  res.end();
  ctx.stats.deletes.add(0, ctx.now() - started);
}

/** `X-Backpack-Version` of a write, or undefined; a malformed one is refused (400). */
function requestVersion(req: IncomingMessage): Version | undefined {
  const text = single(req.headers[VERSION_HEADER]);
  if (text === undefined) return undefined;
  const version = parseVersion(text);
  if (version === undefined) {
    throw new BackpackError(
      "BAD_REQUEST",
      "X-Backpack-Version must be a version: 16 digits (µs since the epoch), '-', 4 hex digits (origin)",
    );
  }
  return version;
}

/** A STALE_VERSION refusal answers with the held version in `X-Backpack-Version` too. */
function withHeldVersion(res: ServerResponse, err: unknown): unknown {
  const current = hasCode(err, "STALE_VERSION") ? toBackpackError(err).details?.current : undefined;
  if (typeof current === "string" && !res.headersSent) res.setHeader(VERSION_HEADER, current);
  return err;
}

/**
 * `If-None-Match` / `If-Unmodified-Since` on PUT and DELETE: 412 PRECONDITION_FAILED (with the current
 * `ETag` when there is a current version) when the node holds that version, or a change (write or delete)
 * after that date. The replicator sends both, so that a copy never overwrites a newer write or undoes a
 * delete, and a copy the target already holds is not stored twice.
 */
function checkWriteConditions(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
): void {
  const ifNoneMatch = single(req.headers["if-none-match"]);
  const ifUnmodifiedSince = single(req.headers["if-unmodified-since"]);
  if (ifNoneMatch === undefined && ifUnmodifiedSince === undefined) return;
  const info = ctx.store.stat(key);
  const current = info && { etag: etagOf(info.bodyCrc, info.size), modifiedMs: info.writeTime };
  const held = ctx.store.held(key);
  const deletedMs = held?.deleted ? versionTimeMs(held.version) : undefined;
  if (!writePreconditionFails({ ifNoneMatch, ifUnmodifiedSince }, current, deletedMs)) return;
  if (current) res.setHeader("etag", current.etag);
  throw new BackpackError(
    "PRECONDITION_FAILED",
    current ? `${key} is held in a version the request excludes` : `${key} was deleted after that date`,
  );
}
