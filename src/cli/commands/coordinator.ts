import { dashboardRoutes } from "../../dashboard/routes.js";
import { setTimeout as sleep } from "node:timers/promises";
import { toBackpackError } from "../../common/errors.js";
import { createLogger, type Logger } from "../../common/logger.js";
import { openClusterMap, targetFromArgs } from "../../cluster/open.js";
import type { ClusterMap, QueueSettings } from "../../cluster/types.js";
import { coordinatorConfig, COORDINATOR_DEFAULTS, type CoordinatorConfig } from "../../coordinator/config.js";
import { CoordinatorService } from "../../coordinator/service.js";
import { openQueue } from "../../queue/open.js";
import type { ReplicationQueue } from "../../queue/types.js";
import { optInt, optString, requirePositional, type Command } from "../command.js";
import type { ParsedArgs } from "../args.js";
import {
  bytesOption,
  durationOption,
  logLevelOf,
  logLevelOption,
  parseHost,
  parsePort,
  secretOption,
  untilStopped,
} from "../options.js";
import { ringConfigOf, RING_OPTIONS, startRespawner } from "../ring-options.js";
import { s3Config } from "../../s3/config.js";
import { S3Service } from "../../s3/service.js";
import { UsageError } from "../args.js";

export const command: Command = {
  spec: {
    name: "backpack coordinator",
    summary:
      "Runs a coordinator: takes uploads (PUT /<key>), picks a shard, writes to its nodes at once and queues a copy for a node that is down; reads and deletes /<shard>:<key> with failover; GET /stats, /metrics, /healthz.",
    positionals: [
      {
        name: "zk",
        description: "ZooKeeper servers host:port,... (or file:<path> for an embedded cluster map file)",
      },
      { name: "root", description: "ZooKeeper root path of the cluster, e.g. /backpack" },
      { name: "host", description: "address to listen on, e.g. 127.0.0.1 or 0.0.0.0" },
      { name: "port", description: "port to listen on (0 picks a free one)" },
    ],
    options: [
      { name: "max-body", type: "string", description: "largest upload, e.g. 5gb", default: "1gb" },
      {
        name: "retain",
        type: "string",
        description:
          "uploads up to this size are kept in memory while streaming, so a node failing mid-way is retried on the next one",
        default: "8mb",
      },
      {
        name: "max-buffered",
        type: "string",
        description:
          "memory for upload bodies held whole, over all uploads; past it chunked bodies are spooled to --tmp-dir and others stream through without a retry copy",
        default: "128mb",
      },
      {
        name: "body-timeout",
        type: "string",
        description: "longest silence allowed while receiving an upload's body; past it 408",
        default: "20s",
      },
      {
        name: "min-body-rate",
        type: "string",
        description:
          "slowest upload body rate allowed, per second over each --body-timeout of waiting (e.g. 1kb); slower is cut with 408; 0 turns it off",
        default: "1kb",
      },
      {
        name: "token-file",
        type: "string",
        description:
          "file holding the client write token: PUT and DELETE then need Authorization: Bearer <token> (or set BACKPACK_WRITE_TOKEN)",
      },
      {
        name: "node-token-file",
        type: "string",
        description: "file holding the storage nodes' write token (or set BACKPACK_NODE_TOKEN)",
      },
      {
        name: "admin-token-file",
        type: "string",
        description:
          "file holding the token of admin actions (POST /admin/..., the dashboard's buttons; or set BACKPACK_ADMIN_TOKEN); the write token when unset",
      },
      {
        name: "node-timeout",
        type: "string",
        description: "time a node may take to answer, and the longest pause inside a transfer",
        default: "10s",
      },
      {
        name: "headers-timeout",
        type: "string",
        description: "time allowed to send the request headers; past it 408",
        default: "20s",
      },
      {
        name: "replicas",
        type: "string",
        description:
          "where an upload is written before its 200 (X-Backpack-Replicas chooses per request): live = every node of its shard that is up, at once, copies queued for the others; all = every node; one = one node, copies queued for the others (the original's way: weaker, a new file is a single copy until copied)",
        default: "live",
      },
      {
        name: "write-quorum",
        type: "string",
        description: "live uploads: nodes that must hold the file durably for a 200 (fewer: 503)",
        default: "1",
      },
      {
        name: "write-timeout",
        type: "string",
        description:
          "a node whose write falls this far behind the other replicas of the upload is cut and gets a queued copy instead",
        default: "2s",
      },
      {
        name: "max-backlog",
        type: "string",
        description:
          "uploads in the one mode wait (up to 5 s) while more copies than this are due in the replication queue; 0 = no limit",
        default: "100",
      },
      {
        name: "usage-flush",
        type: "string",
        description: "how often shard usage is written to the cluster map",
        default: "1s",
      },
      {
        name: "tmp-dir",
        type: "string",
        description: "where chunked uploads larger than --retain are spooled",
        default: "the system temp dir",
      },
      {
        name: "s3-listen",
        type: "string",
        description: "serve the S3 API on this host:port too (docs/s3.md); off when not given",
      },
      {
        name: "s3-domain",
        type: "string",
        description: "S3 virtual-host style: <bucket>.<domain> names the bucket (path style always works)",
      },
      {
        name: "s3-region",
        type: "string",
        description: "the region S3 clients are told (GetBucketLocation)",
        default: "us-east-1",
      },
      {
        name: "s3-upload-max-age",
        type: "string",
        description: "S3 multipart uploads never completed are removed after this age",
        default: "7d",
      },
      ...RING_OPTIONS,
      logLevelOption("info"),
    ],
    notes: `
A 200 means every node of the upload's shard that is up holds the file durably (at least --write-quorum of
them), and every other one has a copy task in the replication queue (named in X-Backpack-Queued), made by a
replicator once it is back. The replication queue is the one named in the cluster map (backpack-coordinator-init
/ set-queue). ZooKeeper or Redis going away never stops the coordinator: it works from the last known map, keeps
usage updates until ZooKeeper is back, and answers 503 only when an upload cannot be made safe.

HTTP (see docs/http-api.md): PUT /<key> → 200 {"shard_id":"1"}; X-Backpack-Replicas: all (or ?replicas=all)
answers only once every node of the shard holds the file, one as the original did. GET/HEAD/DELETE
/<shard>:<key>. GET /stats gives
the original's fields (uptime, processed_uploads, processed_bytes, failed_uploads, total_size, used_size,
usage_ratio, available_space, total_shards, writable_shards, queue_length).

Tokens are never taken from the command line (they would show in the process list): use the files or the
environment variables.

Output: JSON log lines on stderr; the first one with "msg":"listening" carries the URL, e.g.
{"level":30,"msg":"listening","url":"http://127.0.0.1:8080"}. Runs until SIGINT or SIGTERM, then finishes
in-flight requests, writes pending usage to the cluster map and exits 0.

Exit codes: 0 stopped cleanly; 1 could not start (e.g. port in use); 2 wrong arguments.

Example:
  backpack-coordinator zk1:2181,zk2:2181,zk3:2181 /backpack 0.0.0.0 8080
  backpack coordinator file:./data/cluster.json / 127.0.0.1 0`,
  },

  async run(args, io) {
    const zk = requirePositional(args, "zk");
    const root = requirePositional(args, "root");
    const host = requirePositional(args, "host");
    const port = parsePort(requirePositional(args, "port"));
    const logLevel = logLevelOf(args, "info");
    const bytes = (name: string): number | undefined => bytesOption(args, name);
    const ms = (name: string): number | undefined => durationOption(args, name);
    const secret = (option: string, env: string, what: string): string | undefined =>
      secretOption(args, io, option, env, what);
    const config = coordinatorConfig({
      host,
      port,
      maxBodyBytes: bytes("max-body"),
      retainBytes: bytes("retain"),
      maxBufferedBytes: bytesOption(args, "max-buffered", true),
      bodyTimeoutMs: ms("body-timeout"),
      minBodyRate: bytesOption(args, "min-body-rate", true),
      nodeTimeoutMs: ms("node-timeout"),
      headersTimeoutMs: ms("headers-timeout"),
      usageFlushMs: ms("usage-flush"),
      maxBacklog: optInt(args, "max-backlog"),
      replicas: optString(args, "replicas") as CoordinatorConfig["replicas"] | undefined,
      writeQuorum: optInt(args, "write-quorum"),
      writeTimeoutMs: ms("write-timeout"),
      tmpDir: optString(args, "tmp-dir") ?? COORDINATOR_DEFAULTS.tmpDir,
      writeToken: secret("token-file", "BACKPACK_WRITE_TOKEN", "write token"),
      nodeToken: secret("node-token-file", "BACKPACK_NODE_TOKEN", "node token"),
      adminToken: secret("admin-token-file", "BACKPACK_ADMIN_TOKEN", "admin token"),
      ring: ringConfigOf(args, io, command.spec, "coordinator"),
    });
    const s3 = s3Of(args, config.tmpDir, config.maxBodyBytes);
    const log = createLogger({ level: logLevel, name: "coordinator" });

    const map = await startMap(zk, root, log, io.stopSignal);
    if (map === undefined) return 0;
    const queues = new QueueFollower(log);
    await queues.follow(map.snapshot().queue);
    const service = new CoordinatorService(config, {
      clusterMap: map,
      queue: queues.current,
      log,
      processMetrics: true,
      routes: dashboardRoutes(),
    });
    queues.onSwap = (q) => service.setQueue(q);
    const unsubscribe = map.onChange((snapshot) => void queues.follow(snapshot.queue));
    await service.start();
    log.info({ url: service.url, zk, root, queue: queues.current !== undefined }, "listening");
    const front =
      s3 === undefined
        ? undefined
        : new S3Service(s3, {
            map,
            coordinatorUrl: () => service.url,
            writeToken: config.writeToken,
            log: log.child({ part: "s3" }),
          });
    await front?.start();
    if (front) log.info({ s3: front.url }, "S3 listening");
    const respawner = startRespawner(args, service.ring.ring, log);
    await untilStopped(io);
    respawner?.stop();
    log.info("stopping");
    await front?.stop();
    unsubscribe();
    await service.stop();
    await queues.close();
    await map.stop();
    log.info("stopped");
    log.flush();
    return 0;
  },
};

/** The S3 front's settings from --s3-*; undefined without --s3-listen. */
function s3Of(
  args: ParsedArgs,
  tmpDir: string,
  maxBodyBytes: number,
): ReturnType<typeof s3Config> | undefined {
  const listen = optString(args, "s3-listen");
  const domain = optString(args, "s3-domain");
  if (listen === undefined) {
    if (domain !== undefined) throw new UsageError("--s3-domain goes with --s3-listen");
    return undefined;
  }
  const colon = listen.lastIndexOf(":");
  if (colon <= 0) throw new UsageError(`--s3-listen must be host:port, got "${listen}"`);
  return s3Config({
    host: parseHost(listen.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), "--s3-listen host"),
    port: parsePort(listen.slice(colon + 1), "--s3-listen port"),
    domain,
    region: optString(args, "s3-region"),
    uploadMaxAgeMs: durationOption(args, "s3-upload-max-age"),
    tmpDir,
    maxBodyBytes,
  });
}

/**
 * Starts the cluster map, retrying while ZooKeeper is away (a coordinator started before its ensemble waits for
 * it instead of exiting). Undefined when asked to stop first.
 */
async function startMap(
  zk: string,
  root: string,
  log: Logger,
  stop: AbortSignal,
): Promise<ClusterMap | undefined> {
  for (let attempt = 0; !stop.aborted; attempt++) {
    const map = openClusterMap(targetFromArgs(zk, root), { log });
    try {
      await map.start();
      return map;
    } catch (err) {
      await map.stop().catch(() => undefined);
      log.warn({ err: toBackpackError(err).message, attempt }, "cluster map unavailable; retrying");
      await sleep(Math.min(5000, 250 * 2 ** attempt), undefined, { signal: stop }).catch(() => undefined);
    }
  }
  return undefined;
}

/** Keeps the replication queue in line with the cluster map's queue settings. */
class QueueFollower {
  current: ReplicationQueue | undefined;
  onSwap: ((queue: ReplicationQueue | undefined) => void) | undefined;
  private settingsText = "";
  private tail: Promise<void> = Promise.resolve();
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly log: Logger) {}

  follow(settings: QueueSettings | undefined): Promise<void> {
    this.tail = this.tail.then(() => this.apply(settings));
    return this.tail;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    await this.tail;
    await this.current?.stop().catch(() => undefined);
    this.current = undefined;
  }

  private async apply(settings: QueueSettings | undefined): Promise<void> {
    const text = JSON.stringify(settings ?? null);
    if (text === this.settingsText) return;
    this.settingsText = text;
    const old = this.current;
    let next: ReplicationQueue | undefined;
    if (settings !== undefined) {
      try {
        next = await openQueue({ settings }, { log: this.log });
      } catch (err) {
        // Uploads still work without it (direct copies); try again in a while, or at the next map change.
        this.settingsText = "";
        if (!this.closed) {
          clearTimeout(this.retry);
          this.retry = setTimeout(() => void this.follow(settings), 2000);
          this.retry.unref();
        }
        this.log.warn(
          { err: toBackpackError(err).message },
          "replication queue unavailable; copying directly",
        );
      }
    }
    this.current = next;
    this.onSwap?.(next);
    await old?.stop().catch(() => undefined);
  }
}
