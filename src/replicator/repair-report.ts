import type { ReplicaDigest } from "../client/node-client.js";
import type { NodeHealth, ShardHealth } from "../queue/health.js";

/** What one comparison of a shard found and did. */
export interface ShardReport {
  shard: string;
  startedAt: number;
  finishedAt: number;
  /** Servers compared; the others could not be (unreachable, or away longer than the grace period). */
  compared: string[];
  skipped: { server: string; reason: string }[];
  /** Buckets whose digests differed. */
  differingBuckets: number;
  /**
   * Files (not deletes) held intact by fewer servers than the shard has, when the comparison began; with a
   * server that could not be compared, every entry of the shard (its copies there cannot be verified).
   */
  underReplicated: number;
  copied: number;
  deleted: number;
  /** Damaged records replaced by a good copy of the same version. */
  restored: number;
  /** Repairs that did not succeed (retried by the next comparison). */
  failed: number;
  /** Keys whose newest version is damaged everywhere (or held nowhere readable): cannot be repaired here. */
  unrepairable: string[];
  /** Per server, the repairs it needed and how many are done (a refilled node shows its progress here). */
  progress: Record<string, { needed: number; done: number }>;
  /** Of `underReplicated`, the files whose every repair has succeeded. */
  underReplicatedFixed: number;
}

/** A comparison of `shard` beginning now, with nothing found yet. */
export function newReport(shard: string): ShardReport {
  return {
    shard,
    startedAt: Date.now(),
    finishedAt: 0,
    compared: [],
    skipped: [],
    differingBuckets: 0,
    underReplicated: 0,
    copied: 0,
    deleted: 0,
    restored: 0,
    failed: 0,
    unrepairable: [],
    progress: {},
    underReplicatedFixed: 0,
  };
}

/**
 * The health document of a shard from the comparison `report` (finished when `finishedAt` is set, else under
 * way), the digests it fetched, and the last complete comparison before it.
 */
export function shardHealth(
  report: ShardReport,
  digests: ReadonlyMap<string, ReplicaDigest>,
  previous: ShardReport | undefined,
  reporter: string,
): Omit<ShardHealth, "repairs"> {
  const finished = report.finishedAt > 0;
  const summary = (r: ShardReport) => ({
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    compared: r.compared,
    skipped: r.skipped,
    differingBuckets: r.differingBuckets,
    unrepairable: r.unrepairable.length,
    failed: r.failed,
  });
  let needed = 0;
  let done = 0;
  for (const p of Object.values(report.progress)) {
    needed += p.needed;
    done += p.done;
  }
  const most = Math.max(0, ...[...digests.values()].map((d) => d.entries));
  const elapsedSec = Math.max(0.001, ((finished ? report.finishedAt : Date.now()) - report.startedAt) / 1000);
  const nodes: Record<string, NodeHealth> = {};
  let behind = 0;
  for (const { server, reason } of report.skipped) nodes[server] = { state: "down", reason };
  for (const server of report.compared) {
    const d = digests.get(server);
    const p = report.progress[server] ?? { needed: 0, done: 0 };
    const node: NodeHealth = {
      state: p.done < p.needed ? (finished ? "behind" : "refilling") : "ok",
      ...(d ? { objects: d.objects, checksumErrors: d.checksumErrors, scrub: d.scrub } : {}),
    };
    const missing = Math.max(d ? most - d.entries : 0, p.needed);
    if (!finished && missing > 0) {
      const perSec = p.done / elapsedSec;
      node.state = "refilling";
      node.refill = {
        missing,
        done: p.done,
        perSec: Math.round(perSec * 10) / 10,
        etaSec: perSec > 0 ? Math.ceil(Math.max(0, missing - p.done) / perSec) : null,
      };
      behind = Math.max(behind, missing - p.done);
    }
    nodes[server] = node;
  }
  return {
    shard: report.shard,
    reporter,
    updatedAt: Date.now(),
    // While it runs, the buckets not listed yet are not counted: a refilling node's count estimates them.
    underReplicated: Math.max(0, report.underReplicated - report.underReplicatedFixed, behind),
    lastComparison: finished ? summary(report) : previous ? summary(previous) : null,
    running: finished ? null : { ...summary(report), repairsNeeded: needed, repairsDone: done },
    nodes,
  };
}
