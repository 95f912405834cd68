import { Counter, Histogram, type Registry } from "prom-client";
import type { LiveSettings } from "../cluster/settings.js";
import type { ClusterMap } from "../cluster/types.js";
import type { NodeClient } from "../client/node-client.js";
import type { Logger } from "../common/logger.js";
import type { HybridClock } from "../common/version.js";
import type { AckedVersions } from "./acked-versions.js";
import type { CoordinatorConfig } from "./config.js";
import type { LagWatch } from "./lag-watch.js";
import type { NodeHealth } from "./node-health.js";
import type { QueueGate } from "./queue-gate.js";
import type { Random } from "./shard-chooser.js";
import type { UsageTracker } from "./usage-tracker.js";

/** The seed's "files counter (successful uploads and not)", as answered in /stats. */
export interface UploadCounters {
  processedUploads: number;
  processedBytes: number;
  /** Every upload that did not get a 200, client aborts included. */
  failedUploads: number;
  /** Of those, the ones whose client went away mid-upload. */
  abortedUploads: number;
  /** Uploads that waited for the replication backlog to shrink (`maxBacklog`). */
  throttledUploads: number;
  /** GETs answered with a file, and the bytes of their bodies (as declared by the node). */
  reads: number;
  readBytes: number;
}

/** What the handlers share: built once by the service, passed to every request. */
export interface CoordinatorContext {
  readonly config: Readonly<CoordinatorConfig>;
  readonly map: ClusterMap;
  readonly queue: QueueGate;
  readonly nodes: NodeClient;
  readonly health: NodeHealth;
  readonly usage: UsageTracker;
  readonly counters: UploadCounters;
  readonly metrics: CoordinatorMetrics;
  readonly log: Logger;
  /** The client write token as bytes, or undefined when writes are open. */
  readonly writeToken: Buffer | undefined;
  /** The admin actions' token (the write token when none of its own); undefined: admin actions are off. */
  readonly adminToken: Buffer | undefined;
  readonly random: Random;
  /** Wall clock, ms since the epoch (task timestamps, uptime). */
  readonly now: () => number;
  /** Stamps the version of every write and delete this coordinator takes. */
  readonly clock: HybridClock;
  /** The versions this coordinator acknowledged lately: reads never serve anything older. */
  readonly acked: AckedVersions;
  /** The write timeout of every upload's replica writes (`writeTimeoutMs`). */
  readonly lagWatch: LagWatch;
  /** The cluster's runtime settings as this coordinator applied them (client limits, blocklist, log level). */
  readonly settings: LiveSettings;
}

export interface CoordinatorMetrics {
  uploads: Counter<"result">;
  uploadBytes: Counter;
  uploadSeconds: Histogram;
  reads: Counter<"result">;
  readFailovers: Counter;
  deletes: Counter<"result">;
  directCopies: Counter<"result">;
  handoffs: Counter<"reason">;
  usageFlushes: Counter<"result">;
}

export function createMetrics(registry: Registry): CoordinatorMetrics {
  const registers = [registry];
  return {
    uploads: new Counter({
      name: "backpack_coordinator_uploads_total",
      help: "Uploads by result (ok, failed, aborted, refused)",
      labelNames: ["result"],
      registers,
    }),
    uploadBytes: new Counter({
      name: "backpack_coordinator_upload_bytes_total",
      help: "Bytes of successful uploads",
      registers,
    }),
    uploadSeconds: new Histogram({
      name: "backpack_coordinator_upload_seconds",
      help: "Time from request to answer of successful uploads",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    reads: new Counter({
      name: "backpack_coordinator_reads_total",
      help: "GET/HEAD of files by result (ok, not_found, failed)",
      labelNames: ["result"],
      registers,
    }),
    readFailovers: new Counter({
      name: "backpack_coordinator_read_failovers_total",
      help: "Reads that went on to another replica (404, 5xx, checksum error or timeout)",
      registers,
    }),
    deletes: new Counter({
      name: "backpack_coordinator_deletes_total",
      help: "Deletes by result (deleted, queued, not_found, failed)",
      labelNames: ["result"],
      registers,
    }),
    directCopies: new Counter({
      name: "backpack_coordinator_direct_copies_total",
      help: "Copies made by the coordinator itself (queue unavailable, or all replicas asked for), by result",
      labelNames: ["result"],
      registers,
    }),
    handoffs: new Counter({
      name: "backpack_coordinator_handoffs_total",
      help: "Copy tasks queued for a node that does not hold an upload at its 200, by why (skipped: down or suspect; failed; slow: cut by the write timeout)",
      labelNames: ["reason"],
      registers,
    }),
    usageFlushes: new Counter({
      name: "backpack_coordinator_usage_flushes_total",
      help: "Usage batches sent to the cluster map, by result",
      labelNames: ["result"],
      registers,
    }),
  };
}
