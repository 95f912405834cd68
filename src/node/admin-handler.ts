import type { ServerResponse } from "node:http";
import { sendJson } from "../common/http.js";
import { sendMetrics } from "../common/metrics.js";
import type { NodeContext } from "./context.js";

/**
 * Paths that are the node's own, never keys: a file cannot be stored under these names (documented in
 * docs/http-api.md). Only GET and HEAD reach them.
 */
export const RESERVED_PATHS: ReadonlySet<string> = new Set(["/stats", "/metrics", "/healthz", "/ring"]);

export async function handleAdmin(ctx: NodeContext, path: string, res: ServerResponse): Promise<void> {
  switch (path) {
    case "/stats":
      sendJson(res, 200, {
        ...ctx.stats.snapshot(Date.now()),
        maintenance: ctx.turn.stats(),
        settings: ctx.settings.status(),
      });
      return;
    case "/metrics":
      await sendMetrics(res, ctx.stats.registry);
      return;
    case "/ring":
      sendJson(res, 200, ctx.ring.view());
      return;
    default:
      sendJson(res, 200, { status: "ok" });
  }
}
