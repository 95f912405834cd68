import { join } from "node:path";
import type { TestContext } from "node:test";
import { EmbeddedClusterMap } from "../../src/cluster/embedded.js";
import type { ClusterMap } from "../../src/cluster/types.js";
import { coordinatorConfig, type CoordinatorConfig } from "../../src/coordinator/config.js";
import { CoordinatorService } from "../../src/coordinator/service.js";
import { nodeConfig, type NodeConfig } from "../../src/node/config.js";
import { NodeService } from "../../src/node/service.js";
import { EmbeddedQueue } from "../../src/queue/embedded.js";
import type { ReplicationQueue } from "../../src/queue/types.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { waitFor } from "../helpers/wait.js";

/**
 * A small cluster in this process, over real sockets and real files: storage nodes, the embedded cluster map
 * (a JSON file), the embedded durable queue, and one coordinator. Every part is stopped after the test.
 */
export interface Fixture {
  dir: string;
  nodes: Map<string, NodeService>;
  map: ClusterMap;
  queue: ReplicationQueue | undefined;
  coordinator: CoordinatorService;
  url: string;
  /** Stops node `id` (its port then refuses connections). */
  stopNode(id: string): Promise<void>;
  /** Starts node `id` again on the same port and data dir. */
  startNode(id: string): Promise<void>;
  /** Waits until the map's usage of `shard` is `bytes`. */
  usageIs(shard: string, bytes: number): Promise<void>;
}

export interface FixtureOptions {
  /** Shards as id → server ids (servers "1".."n" are created for every id named). Default 2 × 2. */
  shards?: Record<string, string[]>;
  capacity?: number;
  enable?: boolean;
  queue?: boolean;
  config?: Partial<CoordinatorConfig>;
  /** Settings of every storage node. */
  node?: Partial<NodeConfig>;
  nodeToken?: string;
  /** The coordinator's randomness (shard choice, node order); Math.random by default. */
  random?: () => number;
}

export async function startFixture(
  t: Pick<TestContext, "after">,
  options: FixtureOptions = {},
): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-coord-"));
  // One hook, run in reverse order of start, the temp dir last (hooks of a test run in the order added).
  const cleanups: (() => Promise<void>)[] = [async () => rm(dir, { recursive: true, force: true })];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  });
  const shards = options.shards ?? { "1": ["1", "2"], "2": ["3", "4"] };
  const serverIds = [...new Set(Object.values(shards).flat())];
  const nodes = new Map<string, NodeService>();
  const startNodeAt = async (id: string, port: number): Promise<NodeService> => {
    const node = new NodeService(
      nodeConfig({ ...options.node, dataDir: join(dir, `node-${id}`), port, writeToken: options.nodeToken }),
    );
    await node.start();
    nodes.set(id, node);
    return node;
  };
  const ports = new Map<string, number>();
  cleanups.push(async () => {
    for (const n of nodes.values()) await n.stop();
  });
  for (const id of serverIds) {
    const node = await startNodeAt(id, 0);
    ports.set(id, Number(new URL(node.url).port));
  }
  const map = new EmbeddedClusterMap({ file: join(dir, "cluster.json"), pollIntervalMs: 50 });
  await map.start();
  cleanups.push(() => map.stop());
  // The map's queue settings are not used here: the coordinator is given the embedded queue directly.
  await map.init({ key: "backpack-queue", servers: [{ host: "127.0.0.1", port: 6379 }] });
  for (const id of serverIds) await map.addServer(id, (nodes.get(id) as NodeService).url);
  for (const [id, servers] of Object.entries(shards)) {
    await map.addShard(id, servers, options.capacity ?? 1024 ** 3);
    if (options.enable !== false) await map.setShardEnabled(id, true);
  }
  let queue: ReplicationQueue | undefined;
  if (options.queue !== false) {
    queue = new EmbeddedQueue(join(dir, "queue"));
    await queue.start();
    const q = queue;
    cleanups.push(() => q.stop());
  }
  const coordinator = new CoordinatorService(
    coordinatorConfig({ port: 0, usageFlushMs: 50, nodeToken: options.nodeToken, ...options.config }),
    { clusterMap: map, queue, ...(options.random ? { random: options.random } : {}) },
  );
  await coordinator.start();
  cleanups.push(() => coordinator.stop());
  return {
    dir,
    nodes,
    map,
    queue,
    coordinator,
    url: coordinator.url,
    async stopNode(id) {
      await nodes.get(id)?.stop();
    },
    async startNode(id) {
      await startNodeAt(id, ports.get(id) as number);
    },
    async usageIs(shard, bytes) {
      await waitFor(() => map.snapshot().shards[shard]?.used === bytes, {
        what: `usage of shard ${shard} to be ${bytes} (is ${map.snapshot().shards[shard]?.used})`,
      });
    },
  };
}

/** The node's base URL for server `id`. */
export function nodeUrl(f: Fixture, id: string): string {
  return (f.nodes.get(id) as NodeService).url;
}

/** GET a key straight from a node: status and body text. */
export async function fromNode(
  f: Fixture,
  id: string,
  key: string,
): Promise<{ status: number; body: string }> {
  const res = await fetch(`${nodeUrl(f, id)}/${key}`);
  return { status: res.status, body: await res.text() };
}
