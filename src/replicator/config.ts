import { buildConfig, check } from "../common/config.js";
import type { RingMemberConfig } from "../ring/config.js";

export interface ReplicatorConfig {
  /** Address of the stats endpoints (`/stats`, `/metrics`, `/healthz`); port 0 picks a free one. */
  host: string;
  port: number;
  /** Tasks worked on at once, over all targets. */
  concurrency: number;
  /** Tasks worked on at once per target node (a slow or recovering node is not swamped). */
  perTargetConcurrency: number;
  /** How long a leased task is ours; it must cover one copy (a lease that runs out is taken over). */
  leaseMs: number;
  /** Tasks asked for per lease call. */
  batchSize: number;
  /** Bearer token for PUT/DELETE on the nodes (undefined when the nodes take writes without one). */
  nodeToken: string | undefined;
  /** Time allowed per node request (for streams: between bytes). */
  requestTimeoutMs: number;
  /** A target that fails at the transport level is left alone this long at first (doubling up to the max). */
  targetDownMinMs: number;
  targetDownMaxMs: number;
  /** Time from the start of one comparison of every shard's replicas to the next, at least; 0 turns repair off. */
  repairIntervalMs: number;
  /** Repairs (copies and deletes) per second at most. */
  repairFilesPerSec: number;
  /** Bytes copied by repair per second at most. */
  repairBytesPerSec: number;
  /** Membership in the ring (on the stats port), or undefined: no ring (docs/ring.md). */
  ring: Readonly<RingMemberConfig> | undefined;
}

export const REPLICATOR_DEFAULTS: Readonly<Omit<ReplicatorConfig, "nodeToken" | "ring">> = Object.freeze({
  host: "127.0.0.1",
  port: 0,
  concurrency: 16,
  perTargetConcurrency: 8,
  leaseMs: 60_000,
  batchSize: 200,
  requestTimeoutMs: 30_000,
  targetDownMinMs: 500,
  targetDownMaxMs: 30_000,
  repairIntervalMs: 30_000,
  repairFilesPerSec: 200,
  repairBytesPerSec: 32 * 1024 ** 2,
});

export function replicatorConfig(
  ...layers: ReadonlyArray<Partial<ReplicatorConfig> | undefined>
): Readonly<ReplicatorConfig> {
  return buildConfig<ReplicatorConfig>(
    "replicator",
    [{ ...REPLICATOR_DEFAULTS, nodeToken: undefined, ring: undefined }, ...layers],
    (c, problems) => {
      check.nonEmpty(problems, "host", c.host);
      check.port(problems, "port", c.port);
      check.positiveInt(problems, "concurrency", c.concurrency);
      check.positiveInt(problems, "perTargetConcurrency", c.perTargetConcurrency);
      check.positiveInt(problems, "leaseMs", c.leaseMs);
      check.positiveInt(problems, "batchSize", c.batchSize);
      check.positiveInt(problems, "requestTimeoutMs", c.requestTimeoutMs);
      check.positiveInt(problems, "targetDownMinMs", c.targetDownMinMs);
      check.positiveInt(problems, "targetDownMaxMs", c.targetDownMaxMs);
      check.nonNegative(problems, "repairIntervalMs", c.repairIntervalMs);
      check.positiveInt(problems, "repairFilesPerSec", c.repairFilesPerSec);
      check.positiveInt(problems, "repairBytesPerSec", c.repairBytesPerSec);
      if (c.leaseMs < 1000)
        problems.push(`leaseMs must be at least 1000 (a copy needs time), got ${c.leaseMs}`);
    },
  );
}
