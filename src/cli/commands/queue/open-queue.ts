import { BackpackError } from "../../../common/errors.js";
import { silentLogger } from "../../../common/logger.js";
import { openClusterMap, targetFromArgs } from "../../../cluster/open.js";
import { openQueue } from "../../../queue/open.js";
import type { ReplicationQueue } from "../../../queue/types.js";
import type { PositionalSpec } from "../../args.js";

export const MAP_POSITIONALS: readonly PositionalSpec[] = [
  {
    name: "zk",
    description: "ZooKeeper servers host:port[,host:port...], or file:<path> for an embedded map",
  },
  { name: "root", description: "root path of the cluster in ZooKeeper, e.g. /backpack" },
];

/** Opens the queue named by the cluster map's settings, runs `fn`, and closes both. */
export async function withQueue<T>(
  zk: string,
  root: string,
  fn: (queue: ReplicationQueue) => Promise<T>,
): Promise<T> {
  const map = openClusterMap(targetFromArgs(zk, root), { log: silentLogger });
  await map.start();
  try {
    const settings = map.snapshot().queue;
    if (!map.snapshot().initialized || !settings) {
      throw new BackpackError(
        "NOT_INITIALIZED",
        `no queue settings under ${zk} ${root}: run backpack-coordinator-init (or -set-queue) first`,
      );
    }
    // A short command timeout: an operator's status command must answer even with a server down.
    const queue = await openQueue({ settings }, { commandTimeoutMs: 1000 });
    try {
      return await fn(queue);
    } finally {
      await queue.stop();
    }
  } finally {
    await map.stop();
  }
}

export function formatAge(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
