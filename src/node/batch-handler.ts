import type { IncomingMessage, ServerResponse } from "node:http";
import { decodeBatch, type BatchRecord } from "../common/batch-frame.js";
export { BATCH_PATH } from "../common/batch-frame.js";
import { formatChecksum } from "../common/checksum.js";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { checkBearer, sendError, sendJson } from "../common/http.js";
import { pickStoredHeaders } from "../common/stored-headers.js";
import { validateKey } from "../common/key.js";
import { formatVersion } from "../common/version.js";
import { RESERVED_PATHS } from "./admin-handler.js";
import { idleError, readWhole, tooLarge } from "./body-reader.js";
import type { NodeContext } from "./context.js";
import { REPLICA_PREFIX } from "./replica-handler.js";

/** The largest batch a node takes, bytes (a sender keeps its batches of small writes well under it). */
export const MAX_BATCH_BYTES = 16 * 1024 * 1024;

/** How one record of a batch went: as the answer to a PUT of it would have said. */
export type BatchResult =
  | { status: 201; crc: string; version: string }
  | { status: number; code: string; error: string; current?: string };

/**
 * `POST /_backpack/batch`: several small writes in one request (the frame: common/batch-frame.ts). The whole
 * frame is read and its framing checked before anything is stored: a frame cut short, a header that fails its
 * CRC or a record count it cannot hold is refused as a whole (400 `BAD_FRAME`, nothing stored). Then every
 * record is stored as its own PUT would be (the same checks: key rules, reserved keys, its body's CRC, its
 * version against the one held), all in the same turn, so that one group commit makes them durable together;
 * the answer (200) says, in the frame's order, what became of each: 201 with the stored checksum and version,
 * or the status and code its PUT would have got. A record that fails fails alone.
 */
export async function handleBatch(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): Promise<void> {
  const started = ctx.now();
  checkBearer(req, ctx.token);
  const lengthHeader = req.headers["content-length"];
  if (req.headers["transfer-encoding"] !== undefined || lengthHeader === undefined) {
    throw new BackpackError("LENGTH_REQUIRED", "a batch needs a Content-Length");
  }
  const declared = Number(lengthHeader);
  if (declared > MAX_BATCH_BYTES) throw tooLarge(MAX_BATCH_BYTES);
  if (!ctx.gate.tryEnter(declared)) {
    throw new BackpackError("OVERLOADED", "too many uploads in flight, retry shortly", { retryAfterSec: 1 });
  }
  try {
    if (expectContinue) res.writeContinue();
    const frame = await readWhole(req, declared, {
      maxBytes: MAX_BATCH_BYTES,
      idle: ctx.idle,
      onIdle: () => {
        ctx.stats.refused.timeout++;
        if (!res.headersSent && !res.destroyed) {
          res.setHeader("connection", "close");
          sendError(res, idleError(), ctx.log);
        }
      },
    });
    const records = decodeBatch(frame, { maxBodyBytes: ctx.config.maxBodyBytes });
    const results = await Promise.all(records.map((r) => storeRecord(ctx, r)));
    const ms = ctx.now() - started;
    for (let i = 0; i < records.length; i++) {
      if (results[i]!.status === 201) ctx.stats.observePut(records[i]!.body.length, ms);
    }
    sendJson(res, 200, { results });
  } finally {
    ctx.gate.leave(declared);
  }
}

function storeRecord(ctx: NodeContext, r: BatchRecord): Promise<BatchResult> {
  try {
    validateKey(r.key);
    if (RESERVED_PATHS.has(`/${r.key}`) || `/${r.key}`.startsWith(REPLICA_PREFIX)) {
      throw new BackpackError("METHOD_NOT_ALLOWED", `/${r.key} is the node's own path, not a key`);
    }
    return ctx.store
      .put(r.key, r.body, {
        size: r.body.length,
        maxBytes: ctx.config.maxBodyBytes,
        contentType: r.contentType,
        // Only the headers a file keeps, within their limit (as on a PUT).
        headers: r.headers && pickStoredHeaders(r.headers),
        expectedCrc: r.bodyCrc,
        version: r.version,
      })
      .then(
        (info): BatchResult => ({
          status: 201,
          crc: formatChecksum(info.bodyCrc),
          version: formatVersion(info.version),
        }),
        failed,
      );
  } catch (err) {
    return Promise.resolve(failed(err));
  }
}

function failed(err: unknown): BatchResult {
  const e = toBackpackError(err);
  const current = e.details?.current;
  return {
    status: e.status,
    code: e.code,
    error: e.message,
    ...(typeof current === "string" ? { current } : {}),
  };
}
