import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError } from "../common/errors.js";
import { handleAdmin, RESERVED_PATHS } from "./admin-handler.js";
import { BATCH_PATH, handleBatch } from "./batch-handler.js";
import { keyOfTarget } from "./fast-key.js";
import { respondError, type NodeContext } from "./context.js";
import { handleRead } from "./read-handler.js";
import { handleReplica, REPLICA_PREFIX } from "./replica-handler.js";
import { handleDelete, handlePut } from "./write-handler.js";

const KEY_METHODS = "GET, HEAD, PUT, DELETE";
const ADMIN_METHODS = "GET, HEAD";

/**
 * Sends one request to its handler by path and method; every failure becomes a JSON error answer. A request
 * answered synchronously (a GET of a small record) returns undefined, anything else a promise.
 */
export function route(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): Promise<void> | undefined {
  try {
    const pending = handle(ctx, req, res, expectContinue);
    if (pending) return pending.catch((err: unknown) => respondError(ctx, req, res, err));
  } catch (err) {
    respondError(ctx, req, res, err);
  }
  return undefined;
}

function handle(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): void | Promise<void> {
  const method = req.method ?? "";
  const target = req.url ?? "";
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  if (RESERVED_PATHS.has(path)) {
    if (method !== "GET" && method !== "HEAD") throw notAllowed(res, method, ADMIN_METHODS);
    return handleAdmin(ctx, path, res);
  }
  if (path === BATCH_PATH) {
    if (method !== "POST") throw notAllowed(res, method, "POST");
    return handleBatch(ctx, req, res, expectContinue);
  }
  if (path.startsWith(REPLICA_PREFIX)) {
    if (method !== "GET") throw notAllowed(res, method, "GET");
    return handleReplica(ctx, req, res, path);
  }
  switch (method) {
    case "GET":
      return handleRead(ctx, req, res, keyOfTarget(target), false);
    case "HEAD":
      return handleRead(ctx, req, res, keyOfTarget(target), true);
    case "PUT":
      return handlePut(ctx, req, res, keyOfTarget(target), expectContinue);
    case "DELETE":
      return handleDelete(ctx, req, res, keyOfTarget(target));
    default:
      throw notAllowed(res, method, KEY_METHODS);
  }
}

function notAllowed(res: ServerResponse, method: string, allow: string): BackpackError {
  res.setHeader("allow", allow);
  return new BackpackError("METHOD_NOT_ALLOWED", `${method} is not allowed here; allowed: ${allow}`);
}
