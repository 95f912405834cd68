import type { ShardReport } from "../../src/replicator/repair-report.js";
import { waitFor } from "./wait.js";

/**
 * What tests compare of replicas: a node's replica digest and listing (`GET /_backpack/digest`, `/_backpack/list`,
 * docs/http-api.md "Replica comparison"), and the replicator's repair reports (`GET /stats`, `repair`).
 */

/** One listed entry as the node answers it (strings as sent, so two listings compare with deepEqual). */
export interface ListedEntry {
  key: string;
  version: string;
  crc: string;
  size: number;
  deleted?: true;
  damaged?: true;
}

export interface NodeDigest {
  buckets: number;
  entries: number;
  /** 16 hex digits per bucket, bucket 0 first. */
  digest: string;
}

export async function nodeDigest(nodeUrl: string): Promise<NodeDigest> {
  const res = await fetch(`${nodeUrl}/_backpack/digest`);
  if (res.status !== 200) throw new Error(`GET ${nodeUrl}/_backpack/digest answered ${res.status}`);
  return (await res.json()) as NodeDigest;
}

/** Every entry a node holds (files, tombstones, damaged records), by key: only non-empty buckets are listed. */
export async function listNode(nodeUrl: string): Promise<Map<string, ListedEntry>> {
  const d = await nodeDigest(nodeUrl);
  const out = new Map<string, ListedEntry>();
  for (let b = 0; b < d.buckets; b++) {
    // An empty bucket's digest is the XOR of nothing.
    if (/^0+$/.test(d.digest.slice(16 * b, 16 * b + 16))) continue;
    let after: string | undefined;
    for (;;) {
      const q = new URLSearchParams({ bucket: String(b), limit: "1000" });
      if (after !== undefined) q.set("after", after);
      const res = await fetch(`${nodeUrl}/_backpack/list?${q.toString()}`);
      if (res.status !== 200)
        throw new Error(`GET ${nodeUrl}/_backpack/list?${q.toString()} answered ${res.status}`);
      const page = (await res.json()) as { more: boolean; entries: ListedEntry[] };
      for (const e of page.entries) out.set(e.key, e);
      if (!page.more || page.entries.length === 0) break;
      after = page.entries.at(-1)!.key;
    }
  }
  return out;
}

export interface RepairStatus {
  shards: ShardReport[];
  running: ShardReport[];
}

export async function repairStatus(replicatorUrl: string): Promise<RepairStatus> {
  const res = await fetch(`${replicatorUrl}/stats`);
  if (res.status !== 200) throw new Error(`GET ${replicatorUrl}/stats answered ${res.status}`);
  return ((await res.json()) as { repair: RepairStatus }).repair;
}

/** A comparison that found the shard's replicas the same: every server compared, nothing to repair. */
export function isClean(r: ShardReport, servers: readonly string[]): boolean {
  return (
    r.underReplicated === 0 &&
    r.differingBuckets === 0 &&
    r.failed === 0 &&
    r.unrepairable.length === 0 &&
    r.skipped.length === 0 &&
    [...r.compared].sort().join(",") === [...servers].sort().join(",")
  );
}

export function formatReport(r: ShardReport): string {
  const { shard, compared, skipped, differingBuckets, underReplicated, copied, deleted, restored, failed } =
    r;
  return (
    `shard ${shard} (began ${new Date(r.startedAt).toISOString()}, ${r.finishedAt - r.startedAt} ms): ` +
    JSON.stringify({
      compared,
      skipped,
      differingBuckets,
      underReplicated,
      copied,
      deleted,
      restored,
      failed,
    }) +
    (r.unrepairable.length > 0 ? ` unrepairable: ${r.unrepairable.slice(0, 10).join(", ")}` : "")
  );
}

/**
 * Waits until the replicator at `url()` (asked again each time: a restarted replicator has another port) has
 * completed a comparison of every shard in `shards` begun at or after `sinceMs` (epoch ms), and resolves with
 * those reports, clean or not. With `untilClean`, a comparison that still found something to repair does not
 * count: it waits for a later one that found nothing.
 */
export async function waitCompared(
  url: () => string,
  shards: Readonly<Record<string, readonly string[]>>,
  sinceMs: number,
  options: { timeoutMs: number; untilClean?: boolean },
): Promise<ShardReport[]> {
  let last: ShardReport[] = [];
  return waitFor(
    async () => {
      const status = await repairStatus(url());
      const reports = Object.keys(shards).map((s) => status.shards.find((r) => r.shard === s));
      last = reports.filter((r) => r !== undefined);
      const done = reports.every(
        (r) =>
          r !== undefined && r.startedAt >= sinceMs && (!options.untilClean || isClean(r, shards[r.shard]!)),
      );
      return done ? last : undefined;
    },
    {
      timeoutMs: options.timeoutMs,
      intervalMs: 200,
      what: `a comparison of every shard begun after ${new Date(sinceMs).toISOString()}${options.untilClean ? " that found nothing to repair" : ""}`,
    },
  ).catch((err: unknown) => {
    throw new Error(
      `${(err as Error).message}; last reports: ${last.map(formatReport).join(" | ") || "none"}`,
    );
  });
}

/** Tallies of the replicator's "repair: shard compared" log lines in `stderr` (JSON lines). */
export function repairLogTotals(stderr: string): {
  copied: number;
  deleted: number;
  restored: number;
  failed: number;
} {
  const t = { copied: 0, deleted: 0, restored: 0, failed: 0 };
  for (const line of stderr.split("\n")) {
    if (!line.includes('"repair: shard compared"')) continue;
    try {
      const rec = JSON.parse(line) as Partial<typeof t>;
      for (const k of Object.keys(t) as (keyof typeof t)[]) t[k] += rec[k] ?? 0;
    } catch {
      // Not a whole log line.
    }
  }
  return t;
}
