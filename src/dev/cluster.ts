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
import { addKey, newAccessKey } from "../s3/access-keys.js";
import { s3Config, type S3FrontConfig } from "../s3/config.js";
import { S3Service } from "../s3/service.js";
import type { SyncMode } from "../storage/types.js";
import { devLayout, fixedPorts, type DevLayout } from "./layout.js";

/** The read cache of each embedded node (a standalone node defaults to 256 MiB). */
const EMBEDDED_READ_CACHE_BYTES = 16 * 1024 ** 2;

const ADMIN_TOKEN_FILE = "admin-token";
/** The local S3 access key (id and secret, JSON, 0600), made at the first start. */
const S3_KEY_FILE = "s3-local-key.json";

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
  /** Every coordinator serves S3 on a listener of its own (docs/s3.md), unless false. */
  s3?: boolean;
  /** Settings of the S3 fronts beyond the defaults (tests: the upload sweep). */
  s3Settings?: Partial<S3FrontConfig>;
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
  /** The S3 endpoints (one per coordinator), and the local access key. */
  s3: string[];
  s3Key: { id: string; secret: string } | undefined;
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
  private s3: S3Service[] = [];
  private s3Key: { id: string; secret: string } | undefined;
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
    if (this.options.s3 !== false) await this.startS3(host);

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

  /** An S3 front beside each coordinator, and the local key (made at the first start, then kept). */
  private async startS3(host: string): Promise<void> {
    const map = this.map as ClusterMap;
    const file = join(this.dir, S3_KEY_FILE);
    try {
      this.s3Key = JSON.parse(await readFile(file, "utf8")) as { id: string; secret: string };
    } catch {
      const key = newAccessKey("local", { "*": "owner" }, Date.now());
      this.s3Key = { id: key.id, secret: key.secret };
      await writeFile(file, JSON.stringify(this.s3Key) + "\n", { mode: 0o600 });
    }
    const { id, secret } = this.s3Key;
    if (!Object.hasOwn(map.snapshot().s3.keys, id)) {
      await map.updateS3(
        addKey({ id, secret, name: "local", created: new Date().toISOString(), grants: { "*": "owner" } }),
      );
    }
    for (const [i, c] of this.coordinators.entries()) {
      const port = this.layout.s3Ports[i] ?? 0;
      // Virtual-host style as <bucket>.localhost (path style with any other Host).
      const settings = {
        host,
        port,
        domain: "localhost",
        tmpDir: join(this.dir, "tmp"),
        ...this.options.s3Settings,
      };
      const front = new S3Service(s3Config(settings), {
        map,
        coordinatorUrl: () => c.url,
        log: this.log.child({ part: "s3", port }),
      });
      this.s3.push(front);
    }
    await Promise.all(this.s3.map((f) => f.start()));
  }

  /** One sweep of old S3 uploads by the first front; resolves with the uploads removed. */
  async sweepS3Uploads(): Promise<number> {
    const front = this.s3[0];
    if (front === undefined) throw new BackpackError("NOT_INITIALIZED", "S3 is not served");
    return front.sweepUploads();
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
      s3: this.s3.map((f) => f.url),
      s3Key: this.s3Key,
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
    const fronts = this.s3.splice(0);
    await Promise.allSettled(fronts.map((f) => f.stop()));
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
