import type { Logger } from "../common/logger.js";
import { EmbeddedClusterMap } from "./embedded.js";
import type { ClusterMap } from "./types.js";
import { ZooKeeperClusterMap } from "./zookeeper.js";

/** Where a cluster map lives: a ZooKeeper ensemble and root path, or an embedded map file. */
export type ClusterMapTarget = { zk: string; root: string } | { file: string };

export interface OpenClusterMapOptions {
  log?: Logger;
  /**
   * How long `start()` waits for ZooKeeper before failing with UNAVAILABLE, and how long one request may wait
   * while disconnected. Default 10 000 ms.
   */
  connectTimeoutMs?: number;
  /** ZooKeeper session timeout asked of the server (it clamps it to 2-20 ticks). Default 10 000 ms. */
  sessionTimeoutMs?: number;
}

/** The cluster map at `target`, not started: call `start()` before reading it. */
export function openClusterMap(target: ClusterMapTarget, options: OpenClusterMapOptions = {}): ClusterMap {
  if ("file" in target)
    return new EmbeddedClusterMap({ file: target.file, ...(options.log ? { log: options.log } : {}) });
  return new ZooKeeperClusterMap({ connectString: target.zk, root: target.root, ...options });
}

/**
 * The admin commands' `<zk>` argument: `host:port[,host:port...]` for ZooKeeper, or `file:<path>` for an
 * embedded map file (the one-process cluster's, or one for trying the commands without ZooKeeper).
 */
export function targetFromArgs(zk: string, root: string): ClusterMapTarget {
  if (zk.startsWith("file:")) return { file: zk.slice("file:".length) };
  return { zk, root };
}
