import type { HealthReport } from "./types.js";

/**
 * A shard's repair health: what the replicators' anti-entropy found the last time it compared the shard's
 * replicas, and what it is doing now. Replicators write it into the queue's servers (`putHealth`) when a
 * comparison begins, every few seconds while it runs, and when it ends; coordinators read it for `/stats`,
 * `/metrics`, `backpack status` and the dashboard (docs/operations.md, "Health").
 */
export interface ShardHealth {
  shard: string;
  /** The replicator that wrote it (its URL), and when (ms since the epoch). */
  reporter: string;
  updatedAt: number;
  /**
   * Files of the shard with fewer verified copies than the shard has servers, as far as known now: found by the
   * last complete comparison (or the one under way, as far as it got) and not repaired since. A server that
   * could not be compared holds no verified copy: while one is down, every file of the shard counts.
   */
  underReplicated: number;
  /** The last complete comparison, or null before the first. */
  lastComparison: ComparisonSummary | null;
  /** The comparison under way, or null. */
  running: (ComparisonSummary & { repairsNeeded: number; repairsDone: number }) | null;
  /** Per server of the shard. */
  nodes: Record<string, NodeHealth>;
  /** Repairs done since the queue began (all replicators together); filled in from the report's totals. */
  repairs: RepairTotals;
}

export interface ComparisonSummary {
  startedAt: number;
  /** 0 while it runs. */
  finishedAt: number;
  compared: string[];
  skipped: { server: string; reason: string }[];
  differingBuckets: number;
  /** Keys whose newest version is damaged wherever it is held: nothing to restore them from. */
  unrepairable: number;
  /** Repairs that failed (tried again by the next comparison). */
  failed: number;
}

export interface NodeHealth {
  /**
   * `ok`: compared and holds everything; `refilling`: the comparison under way is copying files to it;
   * `behind`: the last comparison could not give it everything (see `underReplicated`); `down`: could not
   * be compared (unreachable, or away longer than the tombstone grace period: see `reason`).
   */
  state: "ok" | "refilling" | "behind" | "down";
  reason?: string;
  /** Files it holds, and the figures its digest came with. */
  objects?: number;
  checksumErrors?: number;
  scrub?: ScrubSummary;
  /** While refilling: files it lacked when the comparison began (estimated from the others' counts), copied so far, rate, ETA. */
  refill?: { missing: number; done: number; perSec: number; etaSec: number | null };
}

/** A node's background scrub, as its digest reports it (the storage engine's scrub figures). */
export interface ScrubSummary {
  /** Bytes per second it may read (0: off). */
  rateBytesPerSec: number;
  passesCompleted: number;
  lastPassCompletedAt?: number;
  /** Damaged records it found since the node started. */
  damagedFound: number;
  /** The pass under way: bytes verified of the volumes' bytes. */
  current?: { doneBytes: number; totalBytes: number };
}

export interface RepairTotals {
  copied: number;
  deleted: number;
  /** Damaged records replaced by a good copy of the same version. */
  restored: number;
  failed: number;
}

export const NO_REPAIRS: RepairTotals = { copied: 0, deleted: 0, restored: 0, failed: 0 };

/** The health documents of a queue's reports, with their totals; unreadable documents are left out. */
export function parseHealth(reports: readonly HealthReport[]): ShardHealth[] {
  const out: ShardHealth[] = [];
  for (const r of reports) {
    try {
      const doc = JSON.parse(r.doc) as ShardHealth;
      if (typeof doc !== "object" || doc === null || doc.shard !== r.shard) continue;
      const t = r.totals;
      doc.repairs = {
        copied: t.copied ?? 0,
        deleted: t.deleted ?? 0,
        restored: t.restored ?? 0,
        failed: t.failed ?? 0,
      };
      out.push(doc);
    } catch {
      // A document from a future version, or damaged: shown as no report.
    }
  }
  return out.sort((a, b) => a.shard.localeCompare(b.shard, undefined, { numeric: true }));
}
