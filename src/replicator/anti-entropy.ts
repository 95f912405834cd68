import { setTimeout as sleep } from "node:timers/promises";
import { formatChecksum } from "../common/checksum.js";
import { hasCode, toBackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { compareVersions, formatVersion } from "../common/version.js";
import type { NodeClient, ReplicaEntry } from "../client/node-client.js";
import type { ClusterMap, ClusterSnapshot } from "../cluster/types.js";
import type { Copier, Outcome } from "./copier.js";

export interface AntiEntropyOptions {
  /** Time from the start of one comparison of every shard to the start of the next, at least. */
  intervalMs: number;
  /** Repairs (copies and deletes) per second at most, and bytes copied per second at most. */
  filesPerSec: number;
  bytesPerSec: number;
  token?: string;
  timeoutMs: number;
}

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
}

export interface RepairPlanItem {
  key: string;
  target: string;
  kind: "copy" | "delete" | "restore";
  version: string;
}

const LIST_PAGE = 1000;

/**
 * Anti-entropy: compares the replicas of every shard and repairs every difference, continuously and at a
 * bounded rate (docs/queue.md, "Repair"). A comparison fetches each server's bucket digests (one request per
 * server), lists only the buckets whose digests differ, and for each key there takes the newest version any
 * server holds intact (a delete included) as the truth: a server missing it, holding an older version, or
 * holding it damaged gets it through the replicator's verified copy path (a copy of that version from a server
 * holding it intact, or its tombstone). Versions make this safe: a copy or delete is refused by a node that
 * holds anything newer, so repair never resurrects a deleted file nor deletes a newer write. A node back after
 * longer than its tombstone grace period answers 409 AWAY_TOO_LONG and is left out until an operator resets it.
 */
export class AntiEntropy {
  private readonly reports = new Map<string, ShardReport>();
  private readonly current = new Map<string, ShardReport>();
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private tokens = 0;
  private byteTokens = 0;
  private refilledAt = performance.now();

  constructor(
    private readonly map: ClusterMap,
    private readonly nodes: NodeClient,
    private readonly copier: Copier,
    private readonly log: Logger,
    private readonly options: AntiEntropyOptions,
  ) {}

  start(): void {
    if (this.running || this.options.intervalMs <= 0) return;
    this.running = this.loop().catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.log.error({ err }, "repair stopped");
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  /** The last complete comparison of each shard, and the one under way. */
  status(): { shards: ShardReport[]; running: ShardReport[] } {
    return { shards: [...this.reports.values()], running: [...this.current.values()] };
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const started = Date.now();
      const snapshot = this.map.snapshot();
      for (const shard of Object.keys(snapshot.shards).sort()) {
        if (signal.aborted) return;
        await this.compareShard(shard).catch((err: unknown) => {
          if (!signal.aborted)
            this.log.warn({ shard, err: toBackpackError(err).message }, "shard comparison failed");
        });
      }
      const wait = started + this.options.intervalMs - Date.now();
      await sleep(Math.max(1000, wait), undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * Compares one shard's replicas now and repairs what differs (with `dryRun`, only reports what it would do,
   * through `onPlan`). Resolves with the report.
   */
  async compareShard(
    shardId: string,
    opts: {
      dryRun?: boolean;
      onPlan?: (item: RepairPlanItem) => void;
      onProgress?: (r: ShardReport) => void;
    } = {},
  ): Promise<ShardReport> {
    const snapshot = this.map.snapshot();
    const shard = Object.hasOwn(snapshot.shards, shardId) ? snapshot.shards[shardId] : undefined;
    const report: ShardReport = {
      shard: shardId,
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
    };
    if (!shard) throw new Error(`no shard ${shardId}`);
    this.current.set(shardId, report);
    try {
      const digests = new Map<string, Uint32Array>();
      let entries = 0;
      await Promise.all(
        shard.servers.map(async (server) => {
          const url = snapshot.servers[server]?.url;
          if (url === undefined) {
            report.skipped.push({ server, reason: "not in the servers map" });
            return;
          }
          try {
            const d = await this.nodes.digest(url, this.req());
            digests.set(server, d.hashes);
            entries = Math.max(entries, d.entries);
          } catch (err) {
            const e = toBackpackError(err);
            report.skipped.push({ server, reason: e.message });
            if (hasCode(e, "AWAY_TOO_LONG"))
              this.log.error({ shard: shardId, server, err: e.message }, "not merged");
          }
        }),
      );
      report.compared = [...digests.keys()].sort();
      // A server that could not be compared cannot be vouched for: every file of the shard counts as
      // under-replicated until it is (an alert on under-replication then also fires for a node that is down).
      if (report.skipped.length > 0) report.underReplicated = entries;
      if (report.compared.length < 2 && report.skipped.length === 0) return report;
      const buckets = differingBuckets([...digests.values()]);
      report.differingBuckets = buckets.length;
      if (report.compared.length < 2) return report;
      for (const server of report.compared) report.progress[server] = { needed: 0, done: 0 };
      for (const bucket of buckets) {
        if (this.abort.signal.aborted) break;
        const held = await this.listBucket(snapshot, report.compared, bucket);
        const plan = planBucket(
          held,
          report.compared,
          shard.servers.length,
          report.skipped.length > 0 ? { underReplicated: 0, unrepairable: report.unrepairable } : report,
        );
        for (const item of plan) report.progress[item.plan.target]!.needed++;
        for (const item of plan) {
          if (this.abort.signal.aborted) break;
          if (opts.dryRun) {
            opts.onPlan?.(item.plan);
            continue;
          }
          await this.pace(item.size);
          const outcome = await this.copier.run(item.task(shardId), snapshot);
          this.count(report, item, outcome);
          opts.onProgress?.(report);
        }
      }
      return report;
    } finally {
      report.finishedAt = Date.now();
      this.current.delete(shardId);
      if (!opts.dryRun) this.reports.set(shardId, report);
      const fixed = report.copied + report.deleted + report.restored;
      if (fixed + report.failed + report.unrepairable.length > 0 || report.skipped.length > 0) {
        this.log.info(
          {
            shard: shardId,
            differingBuckets: report.differingBuckets,
            underReplicated: report.underReplicated,
            copied: report.copied,
            deleted: report.deleted,
            restored: report.restored,
            failed: report.failed,
            unrepairable: report.unrepairable.length,
            skipped: report.skipped,
          },
          opts.dryRun ? "repair: shard compared (dry run)" : "repair: shard compared",
        );
      }
    }
  }

  private async listBucket(
    snapshot: ClusterSnapshot,
    servers: string[],
    bucket: number,
  ): Promise<Map<string, Map<string, ReplicaEntry>>> {
    const byKey = new Map<string, Map<string, ReplicaEntry>>();
    await Promise.all(
      servers.map(async (server) => {
        const url = snapshot.servers[server]!.url;
        let after: string | undefined;
        for (;;) {
          const page = await this.nodes.listBucket(url, bucket, { ...this.req(), after, limit: LIST_PAGE });
          for (const e of page.entries) {
            let m = byKey.get(e.key);
            if (!m) byKey.set(e.key, (m = new Map<string, ReplicaEntry>()));
            m.set(server, e);
          }
          if (!page.more || page.entries.length === 0) break;
          after = page.entries.at(-1)!.key;
        }
      }),
    );
    return byKey;
  }

  private count(report: ShardReport, item: PlannedRepair, outcome: Outcome): void {
    const ok =
      outcome.kind === "copied" ||
      outcome.kind === "deleted" ||
      outcome.kind === "skipped" ||
      outcome.kind === "superseded";
    if (!ok) {
      report.failed++;
      this.log.warn(
        { shard: report.shard, key: item.plan.key, target: item.plan.target, reason: outcome.reason },
        "repair failed; retried at the next comparison",
      );
      return;
    }
    report.progress[item.plan.target]!.done++;
    if (outcome.kind === "copied") {
      if (item.plan.kind === "restore") report.restored++;
      else report.copied++;
    } else if (outcome.kind === "deleted" || (item.plan.kind === "delete" && outcome.kind === "skipped")) {
      report.deleted++;
    }
  }

  /** Waits for room under the files-per-second and bytes-per-second bounds. */
  private async pace(bytes: number): Promise<void> {
    const { filesPerSec, bytesPerSec } = this.options;
    for (;;) {
      const now = performance.now();
      const sec = (now - this.refilledAt) / 1000;
      this.refilledAt = now;
      this.tokens = Math.min(filesPerSec, this.tokens + sec * filesPerSec);
      this.byteTokens = Math.min(bytesPerSec, this.byteTokens + sec * bytesPerSec);
      if (this.tokens >= 1 && (this.byteTokens >= bytes || this.byteTokens >= bytesPerSec)) {
        this.tokens -= 1;
        this.byteTokens -= bytes;
        return;
      }
      const waitFiles = ((1 - this.tokens) / filesPerSec) * 1000;
      const waitBytes = ((Math.min(bytes, bytesPerSec) - this.byteTokens) / bytesPerSec) * 1000;
      await sleep(Math.max(1, waitFiles, waitBytes), undefined, { signal: this.abort.signal }).catch(
        () => undefined,
      );
      if (this.abort.signal.aborted) return;
    }
  }

  private req(): { timeoutMs: number; token?: string } {
    return {
      timeoutMs: this.options.timeoutMs,
      ...(this.options.token ? { token: this.options.token } : {}),
    };
  }
}

interface PlannedRepair {
  plan: RepairPlanItem;
  size: number;
  task(shard: string): Parameters<Copier["run"]>[0];
}

/** Buckets whose digests are not the same on every server. */
export function differingBuckets(digests: Uint32Array[]): number[] {
  const out: number[] = [];
  const first = digests[0];
  if (!first) return out;
  for (let b = 0; b < first.length / 2; b++) {
    for (const d of digests) {
      if (d[2 * b] !== first[2 * b] || d[2 * b + 1] !== first[2 * b + 1]) {
        out.push(b);
        break;
      }
    }
  }
  return out;
}

/**
 * What to repair in one bucket, given what each server holds of each key: the newest version held intact
 * anywhere wins; every server without it gets it. Pure. Counts under-replicated files and unrepairable keys
 * into `report`.
 */
export function planBucket(
  held: Map<string, Map<string, ReplicaEntry>>,
  servers: string[],
  replicas: number,
  report: Pick<ShardReport, "underReplicated" | "unrepairable">,
): PlannedRepair[] {
  const out: PlannedRepair[] = [];
  for (const [key, byServer] of held) {
    let winner: ReplicaEntry | undefined;
    for (const e of byServer.values()) {
      if (!e.damaged && (!winner || compareVersions(e.version, winner.version) > 0)) winner = e;
    }
    const newestAny = [...byServer.values()].reduce<ReplicaEntry | undefined>(
      (a, e) => (!a || compareVersions(e.version, a.version) > 0 ? e : a),
      undefined,
    );
    if (!winner || (newestAny && compareVersions(newestAny.version, winner.version) > 0)) {
      // The newest version is damaged wherever it is: no good copy to restore it from.
      report.unrepairable.push(key);
      continue;
    }
    const w = winner;
    const holders = servers.filter((s) => {
      const e = byServer.get(s);
      return e !== undefined && !e.damaged && compareVersions(e.version, w.version) === 0;
    });
    if (!w.deleted && holders.length < replicas) report.underReplicated++;
    for (const target of servers) {
      if (holders.includes(target)) continue;
      const mine = byServer.get(target);
      // A delete goes also to a server that never had the file: a late copy of it could still arrive there.
      const kind: RepairPlanItem["kind"] = w.deleted
        ? "delete"
        : mine?.damaged && compareVersions(mine.version, w.version) === 0
          ? "restore"
          : "copy";
      const version = formatVersion(w.version);
      out.push({
        plan: { key, target, kind, version },
        size: w.deleted ? 0 : w.size,
        task: (shard) => ({
          op: w.deleted ? "delete" : "copy",
          shard,
          sources: w.deleted ? [] : holders,
          target,
          key,
          crc: w.deleted ? "00000000" : formatChecksum(w.crc),
          size: w.deleted ? 0 : w.size,
          createdAt: Date.now(),
          version,
        }),
      });
    }
  }
  return out;
}
