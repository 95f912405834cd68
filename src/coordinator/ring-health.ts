import type { Verdict } from "../ring/url-watch.js";
import { authority } from "../ring/url-watch.js";
import type { CoordinatorContext } from "./context.js";

/**
 * What the coordinator does with the ring's verdict on a storage node. Suspect or down (dead, left): the node
 * is marked down in the node health, so uploads and reads go to the shard's other nodes first (uploads then
 * queue its copy, the hinted handoff), and the requests waiting on it are cut (`cut`) so that they go on to
 * another node now instead of at their timeout: a frozen node answers nothing, and nothing else would end
 * them. Alive again: marked up. No verdict (the node is no ring member): the node health works as without a
 * ring, from failures and timeouts.
 */
export function applyVerdict(
  ctx: Pick<CoordinatorContext, "health" | "log" | "map">,
  cut: (authority: string, why: string) => number,
  serverId: string,
  verdict: Verdict | undefined,
  previous: Verdict | undefined,
): void {
  const down = verdict === "suspect" || verdict === "down";
  const wasDown = previous === "suspect" || previous === "down";
  ctx.health.setDown(serverId, down);
  if (down && !wasDown) {
    const url = ctx.map.snapshot().servers[serverId]?.url;
    const cutCount =
      url === undefined ? 0 : cut(authority(url), `the ring holds server ${serverId} ${verdict}`);
    ctx.log.warn(
      { server: serverId, ring: verdict, cut: cutCount },
      "node not answering the ring: tried last",
    );
  } else if (wasDown && !down) {
    ctx.log.info({ server: serverId, ring: verdict ?? "unknown" }, "node back in the ring");
  }
}
