import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { openClusterMap } from "../cluster/open.js";
import type { ClusterMap } from "../cluster/types.js";
import { BackpackError } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import type { Service } from "../common/service.js";
import { coordinatorConfig } from "../coordinator/config.js";
import { CoordinatorService, type CoordinatorDeps } from "../coordinator/service.js";
import { nodeConfig } from "../node/config.js";
import { NodeService } from "../node/service.js";
import { openQueue } from "../queue/open.js";
import type { ReplicationQueue } from "../queue/types.js";
import { replicatorConfig } from "../replicator/config.js";
import { ringMemberConfig, type RingMemberConfig } from "../ring/config.js";
import { ReplicatorService } from "../replicator/service.js";
import type { SyncMode } from "../storage/types.js";
import { devLayout, fixedPorts, type DevLayout } from "./layout.js";

/** The read cache of each embedded node (a standalone node defaults to 256 MiB). */
const EMBEDDED_READ_CACHE_BYTES = 16 * 1024 ** 2;

const ADMIN_TOKEN_FILE = "admin-token";

export interface DevClusterOptions {
  /** Everything lives under here: `node-<id>/`, `cluster.json`, `queue/`, `tmp/`. */
  dataDir: string;
  host: string;
  /** First port (coordinators, then the replicator, then nodes from +10); 0 gives free ports. */
  basePort: number;
  shards: number;
  replicas: number;
  coordinators: number;
  /** Capacity given to each new shard. */
  shardCapacityBytes: number;
  sync: SyncMode;
  /** Every part joins the ring (on its own HTTP port), unless false. */
  ring?: boolean;
  log?: Logger;
  /** More routes for every coordinator (the dashboard at /ui). */
  coordinatorRoutes?: CoordinatorDeps["routes"];
}

export interface DevClusterDescription {
  coordinators: string[];
  replicator: string;
  nodes: { id: string; url: string; shard: string }[];
  dataDir: string;
  /** The file holding the admin token of the coordinators (made at the first start, 0600). */
  adminTokenFile: string;
  /** Shards already in the map that the requested shape did not create (an earlier start's). */
  keptShape: boolean;
}

/**
 * The embedded cluster: storage nodes, coordinators and a replicator in one process, with the cluster map in a
 * file and the queue in an on-disk log. The services are the production ones and talk HTTP on loopback; only
 * the map and the queue are embedded. The first start creates the seed's layout (servers, shards, enabled);
 * later starts reuse the map under `dataDir` and only update the servers' URLs.
 */
export class DevCluster implements Service {
  private nodes: NodeService[] = [];
  private coordinators: CoordinatorService[] = [];
  private replicator: ReplicatorService | undefined;
  private map: ClusterMap | undefined;
  private queue: ReplicationQueue | undefined;
  private layout: DevLayout;
  private keptShape = false;
  private readonly log: Logger;
  private readonly dir: string;

  constructor(private readonly options: DevClusterOptions) {
    this.log = options.log ?? silentLogger;
    this.dir = resolve(options.dataDir);
    this.layout = devLayout(options);
  }

  get url(): string {
    const first = this.coordinators[0];
    if (!first) throw new BackpackError("NOT_INITIALIZED", "the cluster is not started");
    return first.url;
  }

  async start(): Promise<void> {
    await assertPortsFree(this.options.host, fixedPorts(this.layout));
    await mkdir(this.dir, { recursive: true });
    try {
      await this.startParts();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { host, sync } = this.options;
    const log = this.log;
    // Nodes join through nobody: the coordinators and the replicator join through the nodes the map lists.
    const ring: Readonly<RingMemberConfig> | undefined =
      this.options.ring === false ? undefined : ringMemberConfig({});
    this.map = openClusterMap({ file: join(this.dir, "cluster.json") }, { log: log.child({ part: "map" }) });
    await this.map.start();
    this.queue = await openQueue({ dir: join(this.dir, "queue") }, { log: log.child({ part: "queue" }) });

    for (const s of this.layout.servers) {
      const node = new NodeService(
        // Every node of the process has its own read cache: a smaller one each (6 nodes: 96 MiB at most).
        nodeConfig({
          dataDir: join(this.dir, `node-${s.id}`),
          host,
          port: s.port,
          sync,
          readCacheBytes: EMBEDDED_READ_CACHE_BYTES,
          ring,
        }),
        {
          log: log.child({ part: "node", node: s.id }),
        },
      );
      this.nodes.push(node);
    }
    await Promise.all(this.nodes.map((n) => n.start()));
    await this.register();

    const adminToken = await this.adminToken();
    for (const port of this.layout.coordinatorPorts) {
      const c = new CoordinatorService(
        coordinatorConfig({ host, port, tmpDir: join(this.dir, "tmp"), adminToken, ring }),
        {
          clusterMap: this.map,
          queue: this.queue,
          log: log.child({ part: "coordinator", port }),
          routes: this.options.coordinatorRoutes,
        },
      );
      this.coordinators.push(c);
    }
    await mkdir(join(this.dir, "tmp"), { recursive: true });
    await Promise.all(this.coordinators.map((c) => c.start()));

    this.replicator = new ReplicatorService(
      replicatorConfig({ host, port: this.layout.replicatorPort, ring }),
      {
        map: this.map,
        queue: this.queue,
        log: log.child({ part: "replicator" }),
      },
    );
    await this.replicator.start();
  }

  /** First start: the seed's layout, enabled. Later starts: keep the map, point the servers at their URLs. */
  private async register(): Promise<void> {
    const map = this.map as ClusterMap;
    const queueDir = join(this.dir, "queue");
    await map.init({ key: `file:${queueDir}`, servers: [] });
    const before = map.snapshot();
    for (const [i, s] of this.layout.servers.entries()) {
      const url = (this.nodes[i] as NodeService).url;
      if (before.servers[s.id]?.url !== url) await map.addServer(s.id, url);
    }
    if (Object.keys(before.shards).length > 0) {
      this.keptShape = true;
      return;
    }
    for (const shard of this.layout.shards) {
      await map.addShard(shard.id, shard.servers, this.options.shardCapacityBytes);
      await map.setShardEnabled(shard.id, true);
    }
  }

  describe(): DevClusterDescription {
    const snapshot = this.map?.snapshot();
    const shardOf = new Map<string, string>();
    for (const shard of Object.values(snapshot?.shards ?? {}))
      for (const id of shard.servers) shardOf.set(id, shard.id);
    return {
      coordinators: this.coordinators.map((c) => c.url),
      replicator: this.replicator?.url ?? "",
      nodes: this.layout.servers.map((s, i) => ({
        id: s.id,
        url: this.nodes[i]?.url ?? "",
        shard: shardOf.get(s.id) ?? "-",
      })),
      dataDir: this.dir,
      adminTokenFile: join(this.dir, ADMIN_TOKEN_FILE),
      keptShape: this.keptShape,
    };
  }

  /** The coordinators' admin token: made at the first start (random, readable by this user only), then kept. */
  private async adminToken(): Promise<string> {
    const file = join(this.dir, ADMIN_TOKEN_FILE);
    try {
      return (await readFile(file, "utf8")).trim();
    } catch {
      const token = randomBytes(24).toString("base64url");
      await writeFile(file, token + "\n", { mode: 0o600 });
      return token;
    }
  }

  /** Stops in the order that loses nothing: no new uploads, then no new copies, then the nodes and stores. */
  async stop(): Promise<void> {
    const coordinators = this.coordinators.splice(0);
    await Promise.allSettled(coordinators.map((c) => c.stop()));
    await this.replicator?.stop();
    this.replicator = undefined;
    const nodes = this.nodes.splice(0);
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await this.queue?.stop();
    this.queue = undefined;
    await this.map?.stop();
    this.map = undefined;
  }
}

/** A clear error naming the taken port, before anything is started or created. */
async function assertPortsFree(host: string, ports: number[]): Promise<void> {
  for (const port of ports) {
    await new Promise<void>((resolveFree, reject) => {
      const srv = createServer();
      srv.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          new BackpackError(
            "UNAVAILABLE",
            `port ${host}:${port} is already in use (${err.code ?? err.message}); ` +
              "stop what uses it or pick other ports with --port <first port> (or --port 0 for free ones)",
          ),
        ),
      );
      srv.listen(port, host, () => srv.close(() => resolveFree()));
    });
  }
}
