import type { ServerResponse } from "node:http";
import { sendJson } from "../common/http.js";
import type { ClusterView } from "../client/coordinator-client.js";
import type { CoordinatorContext } from "./context.js";

/**
 * `GET /cluster`: the coordinator's view of the map (servers, shards, usage, runtime settings) and of the nodes'
 * health. Storage nodes read it for their shard and the settings (they do not read the map).
 */
export function clusterView(ctx: CoordinatorContext): ClusterView {
  const snapshot = ctx.map.snapshot();
  const suspects = new Set(ctx.health.suspects());
  return {
    servers: Object.values(snapshot.servers).map((s) => ({
      id: s.id,
      url: s.url,
      suspect: suspects.has(s.id),
    })),
    shards: Object.values(snapshot.shards).map((s) => ({
      id: s.id,
      servers: [...s.servers],
      enabled: s.enabled,
      capacity: s.capacity,
      used: Math.max(0, s.used + ctx.usage.unflushed(s.id)),
    })),
    settings: snapshot.settings,
  };
}

export function handleCluster(ctx: CoordinatorContext, res: ServerResponse): void {
  sendJson(res, 200, clusterView(ctx));
}
