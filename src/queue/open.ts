import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { QueueSettings } from "../cluster/types.js";
import { EmbeddedQueue } from "./embedded.js";
import { RedisQueue, type RedisQueueOptions } from "./redis.js";
import type { QueueOptions, ReplicationQueue } from "./types.js";

export type QueueTarget = { settings: QueueSettings } | { dir: string };

export type OpenQueueOptions = QueueOptions & { log?: Logger } & Pick<
    RedisQueueOptions,
    "replicas" | "commandTimeoutMs" | "connectTimeoutMs" | "pollMs"
  >;

/** Queue settings whose key is `file:<dir>` and that list no server name an embedded queue in `<dir>`. */
export const EMBEDDED_PREFIX = "file:";

/**
 * Opens (and starts) the replication queue: the Redis queue over the servers of the cluster map's queue
 * settings, or the embedded on-disk queue in a directory. Settings `{ key: "file:<dir>", servers: [] }`
 * also mean the embedded queue (one process owns a directory at a time). The caller stops it.
 */
export async function openQueue(
  target: QueueTarget,
  options: OpenQueueOptions = {},
): Promise<ReplicationQueue> {
  const queue = createQueue(target, options);
  await queue.start();
  return queue;
}

/** Like `openQueue`, without starting it. */
export function createQueue(target: QueueTarget, options: OpenQueueOptions = {}): ReplicationQueue {
  if ("dir" in target) return new EmbeddedQueue(target.dir, options);
  const { settings } = target;
  if (settings.servers.length === 0) {
    if (settings.key.startsWith(EMBEDDED_PREFIX)) {
      return new EmbeddedQueue(settings.key.slice(EMBEDDED_PREFIX.length), options);
    }
    throw new BackpackError(
      "NOT_INITIALIZED",
      "the queue settings list no Redis server: run backpack-coordinator-set-queue <key> <host:port,...>",
    );
  }
  return new RedisQueue(settings, options);
}
