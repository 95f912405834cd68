import { BackpackError } from "../../common/errors.js";
import { createLogger, type Logger } from "../../common/logger.js";
import { lowerPriority, MAX_NICE } from "../../common/priority.js";
import { parseDuration } from "../../common/units.js";
import { openClusterMap, targetFromArgs } from "../../cluster/open.js";
import { openQueue } from "../../queue/open.js";
import { replicatorConfig, REPLICATOR_DEFAULTS } from "../../replicator/config.js";
import { ReplicatorService } from "../../replicator/service.js";
import { UsageError } from "../args.js";
import { optInt, optString, requirePositional, type Command } from "../command.js";

import {
  bytesOption,
  durationOption,
  logLevelOf,
  logLevelOption,
  secretOption,
  untilStopped,
} from "../options.js";
import { ringConfigOf, RING_OPTIONS, startRespawner } from "../ring-options.js";

/** The replicator's default niceness: below the nodes and coordinators it shares a host with. */
const REPLICATOR_NICE = 10;

/** Lowers the process's priority to `nice`; a system that refuses costs one warning, not the start. */
function lowerOwnPriority(nice: number, log: Logger): number | undefined {
  try {
    return lowerPriority(nice);
  } catch (err) {
    log.warn({ nice, err: (err as Error).message }, "could not lower the CPU priority; running as started");
    return undefined;
  }
}

export const command: Command = {
  spec: {
    name: "backpack replicator",
    summary:
      "Runs a replicator: drains the replication queue, copying each new file to the other nodes of its shard (start as many as the load needs).",
    positionals: [
      {
        name: "zk",
        description: "ZooKeeper servers host:port[,host:port...], or file:<path> for an embedded map",
      },
      { name: "root", description: "root path of the cluster in ZooKeeper, e.g. /backpack" },
      {
        name: "concurrency",
        description: `tasks worked on at once (default ${REPLICATOR_DEFAULTS.concurrency})`,
        optional: true,
      },
    ],
    options: [
      {
        name: "listen",
        type: "string",
        description: "host:port of the /stats, /metrics and /healthz endpoints",
        default: "127.0.0.1:0",
      },
      {
        name: "per-target",
        type: "string",
        description: "tasks worked on at once per target node",
        default: String(REPLICATOR_DEFAULTS.perTargetConcurrency),
      },
      {
        name: "lease",
        type: "string",
        description: "how long a leased task is ours (a copy must fit in it)",
        default: "60s",
      },
      {
        name: "batch",
        type: "string",
        description: "tasks asked of the queue at once",
        default: String(REPLICATOR_DEFAULTS.batchSize),
      },
      {
        name: "token-file",
        type: "string",
        description: "file holding the nodes' write token (or set BACKPACK_WRITE_TOKEN)",
      },
      {
        name: "repair-every",
        type: "string",
        description: "compare every shard's replicas and repair them this often (0: no repair)",
        default: "30s",
      },
      {
        name: "repair-rate",
        type: "string",
        description: "repairs (copies and deletes) per second at most",
        default: String(REPLICATOR_DEFAULTS.repairFilesPerSec),
      },
      {
        name: "repair-bandwidth",
        type: "string",
        description: "bytes per second repair copies at most",
        default: "32mb",
      },
      {
        name: "nice",
        type: "string",
        description: `CPU niceness of this process, 0-${MAX_NICE} (its work is background work: nodes and coordinators on the same host come first)`,
        default: String(REPLICATOR_NICE),
      },
      ...RING_OPTIONS,
      logLevelOption("info"),
    ],
    notes: `
The queue is the one the cluster map's queue settings name (backpack-coordinator-init / -set-queue): the
Redis servers listed there, or an embedded queue when the settings read {"key":"file:<dir>","servers":[]}.
The replicator follows the map live: servers and shards added later are used without a restart.

Each copy streams the file from a node that has it to the target and is verified against the checksum the
coordinator queued (a corrupt or changed source is skipped for another one); a target that already holds the
file is skipped; a target that is down gets its tasks back later with backoff, and is asked every second
whether it answers again: once it does, one log line says so ("target reachable again", with the number of
copies waiting) and its waiting copies go at once. Tasks that fail too often are dead letters: see backpack
queue dead-letters and backpack queue replay.

The replicator runs at a lower CPU priority (--nice, 10 by default; 0 keeps the priority it was started
with), so that a node or coordinator on the same host is served first; copies and repair are paced by their
own limits either way. With --respawn-neighbours it keeps its priority: a neighbour it restarts would inherit
it.

Output: JSON log lines on stderr; the first one with "msg":"listening" carries the URL of the stats
endpoints. GET <url>/stats answers JSON: depth, leased, oldestTaskAgeMs (replication lag), deadLetters,
copies, copiesPerSec, bytes, bytesPerSec, skipped, deletes, superseded, failures, deadLettered, inflight,
targetsDown, and repair: per shard the last comparison of its replicas (see docs/queue.md, "Repair"). Runs
until SIGINT or SIGTERM, then finishes the copies in flight and exits 0.

Exit codes: 0 stopped cleanly; 1 could not start (cluster not initialised, queue not configured, ZooKeeper
unreachable); 2 wrong arguments.

Example:
  backpack-replicator zk1:2181,zk2:2181,zk3:2181 /backpack 32 --listen 0.0.0.0:9300
  backpack replicator file:./data/cluster.json / --token-file /etc/backpack/token`,
  },

  async run(args, io) {
    const zk = requirePositional(args, "zk");
    const root = requirePositional(args, "root");
    const concurrencyText = args.positionals.concurrency;
    if (concurrencyText !== undefined && (!/^\d+$/.test(concurrencyText) || Number(concurrencyText) < 1)) {
      throw new UsageError(`<concurrency> must be a whole number ≥ 1, got "${concurrencyText}"`);
    }
    const listenText = optString(args, "listen") ?? "127.0.0.1:0";
    const m = /^(.+):(\d+)$/.exec(listenText);
    if (!m?.[1] || !m[2] || Number(m[2]) > 65535) {
      throw new UsageError(`--listen must be host:port (port 0 picks a free one), got "${listenText}"`);
    }
    const logLevel = logLevelOf(args, "info");
    const nice = optInt(args, "nice") ?? REPLICATOR_NICE;
    if (nice > MAX_NICE) throw new UsageError(`--nice must be 0-${MAX_NICE}, got ${nice}`);
    const leaseText = optString(args, "lease");
    const config = replicatorConfig({
      host: m[1].replace(/^\[(.*)\]$/, "$1"),
      port: Number(m[2]),
      concurrency: concurrencyText === undefined ? undefined : Number(concurrencyText),
      perTargetConcurrency: optInt(args, "per-target", 1),
      batchSize: optInt(args, "batch", 1),
      leaseMs: leaseText === undefined ? undefined : parseDuration(leaseText, "--lease"),
      nodeToken: secretOption(args, io, "token-file", "BACKPACK_WRITE_TOKEN", "write token"),
      repairIntervalMs: durationOption(args, "repair-every"),
      repairFilesPerSec: optInt(args, "repair-rate", 1),
      repairBytesPerSec: bytesOption(args, "repair-bandwidth"),
      ring: ringConfigOf(args, io, command.spec, "replicator"),
    });

    const log = createLogger({ level: logLevel, name: "replicator" });
    const niceness = lowerOwnPriority(args.options["respawn-neighbours"] === true ? 0 : nice, log);
    const map = openClusterMap(targetFromArgs(zk, root), { log });
    await map.start();
    try {
      const snapshot = map.snapshot();
      if (!snapshot.initialized || !snapshot.queue) {
        throw new BackpackError(
          "NOT_INITIALIZED",
          `no queue settings under ${zk} ${root}: run backpack-coordinator-init (or -set-queue) first`,
        );
      }
      const settings = snapshot.queue;
      const queue = await openQueue({ settings }, { log });
      const unsubscribe = map.onChange((s) => {
        if (s.queue && JSON.stringify(s.queue) !== JSON.stringify(settings)) {
          log.warn({ queue: s.queue }, "the queue settings changed: restart the replicator to use them");
        }
      });
      try {
        const service = new ReplicatorService(config, { map, queue, log, processMetrics: true });
        await service.start();
        log.info(
          { url: service.url, concurrency: config.concurrency, queue: settings.key, nice: niceness },
          "listening",
        );
        const respawner = startRespawner(args, service.ring.ring, log);
        await untilStopped(io);
        respawner?.stop();
        log.info("stopping");
        await service.stop();
      } finally {
        unsubscribe();
        await queue.stop();
      }
    } finally {
      await map.stop();
    }
    log.info("stopped");
    log.flush();
    return 0;
  },
};
