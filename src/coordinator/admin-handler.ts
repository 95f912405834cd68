import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError } from "../common/errors.js";
import { checkBearer, sendJson } from "../common/http.js";
import type { CoordinatorContext } from "./context.js";

export const ADMIN_PREFIX = "/admin/";

/**
 * The admin actions (the dashboard's buttons), `POST` only and behind the admin token (the write token when the
 * coordinator has none of its own; with neither, refused):
 * - `POST /admin/shards/<id>/enable` and `.../disable`: the shard writable or read-only in the cluster map;
 * - `POST /admin/dead-letters/replay`: every dead letter back in the replication queue;
 * - `POST /admin/repair[?shard=<id>...]`: the replicators compare those shards (all when none) now.
 */
export async function handleAdmin(
  ctx: CoordinatorContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  if (req.method !== "POST") {
    throw new BackpackError("METHOD_NOT_ALLOWED", `${req.method ?? "?"} ${path}: admin actions are POST`);
  }
  if (ctx.adminToken === undefined) {
    throw new BackpackError(
      "FORBIDDEN",
      "admin actions are off: this coordinator has no admin token (--admin-token-file or BACKPACK_ADMIN_TOKEN, or a write token)",
    );
  }
  checkBearer(req, ctx.adminToken, { action: "admin actions", token: "admin token" });
  const parts = path.slice(ADMIN_PREFIX.length).split("/");
  if (parts[0] === "shards" && parts.length === 3 && (parts[2] === "enable" || parts[2] === "disable")) {
    const id = decodeURIComponent(parts[1]!);
    const snapshot = ctx.map.snapshot();
    if (!Object.hasOwn(snapshot.shards, id)) throw new BackpackError("NOT_FOUND", `no shard ${id}`);
    const enabled = parts[2] === "enable";
    await ctx.map.setShardEnabled(id, enabled);
    ctx.log.info({ shard: id, enabled }, "admin: shard " + (enabled ? "enabled" : "disabled"));
    sendJson(res, 200, { shard: id, enabled });
    return;
  }
  if (path === `${ADMIN_PREFIX}dead-letters/replay`) {
    const replayed = await ctx.queue.replayDeadLetters();
    ctx.log.info({ replayed }, "admin: dead letters replayed");
    sendJson(res, 200, { replayed });
    return;
  }
  if (path === `${ADMIN_PREFIX}repair`) {
    const shards = new URLSearchParams((req.url ?? "").split("?")[1] ?? "").getAll("shard");
    const known = ctx.map.snapshot().shards;
    for (const s of shards)
      if (!Object.hasOwn(known, s)) throw new BackpackError("NOT_FOUND", `no shard ${s}`);
    await ctx.queue.requestRepair(shards);
    ctx.log.info({ shards: shards.length > 0 ? shards : "all" }, "admin: repair requested");
    sendJson(res, 202, { requested: shards.length > 0 ? shards : Object.keys(known).sort() });
    return;
  }
  throw new BackpackError("NOT_FOUND", `${path} is not an admin action`);
}
