import { setTimeout as sleep } from "node:timers/promises";
import { hasCode, toBackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { NodeClient, ReplicaDigest, ReplicaEntry } from "../client/node-client.js";
import type { ClusterMap, ClusterSnapshot } from "../cluster/types.js";
import type { RepairTotals, ShardHealth } from "../queue/health.js";
import type { Copier, Outcome } from "./copier.js";
import { differingBuckets, planBucket, type PlannedRepair, type RepairPlanItem } from "./repair-plan.js";
import { newReport, shardHealth, type ShardReport } from "./repair-report.js";

export interface AntiEntropyOptions {
  /** Time from the start of one comparison of every shard to the start of the next, at least. */
  intervalMs: number;
  /** Repairs (copies and deletes) per second at most, and bytes copied per second at most. */
  filesPerSec: number;
  bytesPerSec: number;
  token?: string;
  timeoutMs: number;
  /** Repairs in flight at once (within the rates above). Default 8. */
  concurrency?: number;
  /**
   * Where the shard's health goes (the queue's `putHealth`): when a comparison begins, every
   * `publishEveryMs` while it runs, and when it ends, with the repairs done since the last report.
   */
  publish?: (health: Omit<ShardHealth, "repairs">, add: RepairTotals) => Promise<void>;
  publishEveryMs?: number;
  /**
   * An operator's request to compare now (the queue's `repairRequest`), looked at every second between
   * comparisons: a request made after the last comparison began starts one at once, of the shards it names.
   */
  requested?: () => Promise<{ at: number; shards: string[] } | undefined>;
  /**
   * Which shards are this replicator's to compare (the ring's placement among live replicators: see
   * `ShardOwnership`); every shard when not given. A comparison stops between buckets once the shard is
   * no longer ours.
   */
  ownership?: ShardOwnership;
}

/** Who compares which shard when several replicators run. */
export interface ShardOwnership {
  owns(shard: string): boolean;
  /** True while another replicator reports a comparison of the shard under way (it has not let go yet). */
  busyElsewhere(shard: string): Promise<boolean>;
}

/** The most repair's rate bounds let it save up while idle: 50 ms of its rates. */
const BURST_SEC = 0.05;

/** How often a replicator looks for shards that are due (or newly its own). */
const SCHEDULE_MS = 1000;

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
    /** Who reports health (the replicator's URL, once it listens). */
    private readonly reporter: () => string = () => "repair",
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

  /** The last complete comparison of each shard, the ones under way, and the shards this replicator owns now. */
  status(): { shards: ShardReport[]; running: ShardReport[]; owned: string[] } {
    return {
      shards: [...this.reports.values()],
      running: [...this.current.values()],
      owned: Object.keys(this.map.snapshot().shards)
        .filter((s) => this.owns(s))
        .sort(),
    };
  }

  /**
   * Compares each shard this replicator owns once per `intervalMs` (from the start of one comparison to the
   * next). Ownership is looked at every second, so a shard whose owner died is compared by its successor
   * within seconds, and handed back when the owner returns (which waits while the other still reports a
   * comparison under way: never two comparisons of a shard at once). An operator's request (`requested`)
   * makes the shards it names (every shard when it names none) due at once.
   */
  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    const lastStart = new Map<string, number>();
    // Requests made before the start are served by the first comparisons anyway.
    let answered = Date.now();
    while (!signal.aborted) {
      const asked = await this.options.requested?.().catch(() => undefined);
      if (asked && asked.at >= answered) {
        answered = Date.now();
        if (asked.shards.length === 0) lastStart.clear();
        for (const shard of asked.shards) lastStart.delete(shard);
        this.log.info(
          { shards: asked.shards.length > 0 ? asked.shards : "all" },
          "repair requested: comparing now",
        );
      }
      for (const shard of Object.keys(this.map.snapshot().shards).sort()) {
        if (signal.aborted) return;
        if (!this.owns(shard)) {
          lastStart.delete(shard);
          continue;
        }
        if (Date.now() - (lastStart.get(shard) ?? -Infinity) < this.options.intervalMs) continue;
        if (await this.options.ownership?.busyElsewhere(shard).catch(() => false)) continue;
        lastStart.set(shard, Date.now());
        await this.compareShard(shard).catch((err: unknown) => {
          if (!signal.aborted)
            this.log.warn({ shard, err: toBackpackError(err).message }, "shard comparison failed");
        });
      }
      await sleep(SCHEDULE_MS, undefined, { signal }).catch(() => undefined);
    }
  }

  private owns(shard: string): boolean {
    return this.options.ownership?.owns(shard) ?? true;
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
    const report = newReport(shardId);
    if (!shard) throw new Error(`no shard ${shardId}`);
    this.current.set(shardId, report);
    const digestOf = new Map<string, ReplicaDigest>();
    const publisher = opts.dryRun ? undefined : this.publisher(report, digestOf);
    try {
      const digests = new Map<string, Uint32Array>();
      let objects = 0;
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
            digestOf.set(server, d);
            objects = Math.max(objects, d.objects);
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
      if (report.skipped.length > 0) report.underReplicated = objects;
      if (report.compared.length < 2 && report.skipped.length === 0) return report;
      const buckets = differingBuckets([...digests.values()]);
      report.differingBuckets = buckets.length;
      if (report.compared.length < 2) return report;
      for (const server of report.compared) report.progress[server] = { needed: 0, done: 0 };
      publisher?.tick(true);
      const inFlight = new Set<Promise<void>>();
      const limit = Math.max(1, this.options.concurrency ?? 8);
      /** Repairs still to succeed, per under-replicated key (it counts as fixed when none is left). */
      const pendingByKey = new Map<string, number>();
      // The next bucket is listed while the repairs of this one go out.
      let listing = buckets.length > 0 ? this.listBucket(snapshot, report.compared, buckets[0]!) : undefined;
      for (let b = 0; b < buckets.length; b++) {
        if (this.abort.signal.aborted) break;
        if (!opts.dryRun && !this.owns(shardId)) {
          this.log.info({ shard: shardId }, "repair: the shard has another owner now; its comparison stops");
          break;
        }
        const held = await listing!;
        listing =
          b + 1 < buckets.length ? this.listBucket(snapshot, report.compared, buckets[b + 1]!) : undefined;
        const plan = planBucket(
          held,
          report.compared,
          shard.servers.length,
          report.skipped.length > 0 ? { underReplicated: 0, unrepairable: report.unrepairable } : report,
        );
        for (const item of plan) {
          report.progress[item.plan.target]!.needed++;
          if (item.underReplicated)
            pendingByKey.set(item.plan.key, (pendingByKey.get(item.plan.key) ?? 0) + 1);
        }
        for (const item of plan) {
          if (this.abort.signal.aborted) break;
          if (opts.dryRun) {
            opts.onPlan?.(item.plan);
            continue;
          }
          await this.pace(item.size);
          while (inFlight.size >= limit) await Promise.race(inFlight);
          const run = this.copier.run(item.task(shardId), snapshot).then((outcome) => {
            inFlight.delete(run);
            if (this.count(report, item, outcome) && item.underReplicated) {
              const left = (pendingByKey.get(item.plan.key) ?? 1) - 1;
              pendingByKey.set(item.plan.key, left);
              if (left === 0) report.underReplicatedFixed++;
            }
            opts.onProgress?.(report);
            publisher?.tick(false);
          });
          inFlight.add(run);
        }
      }
      listing?.catch(() => undefined); // stopped early: the listing under way is not needed
      await Promise.all(inFlight);
      return report;
    } finally {
      report.finishedAt = Date.now();
      this.current.delete(shardId);
      if (!opts.dryRun) this.reports.set(shardId, report);
      await publisher?.done();
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

  /** Counts a repair's outcome; true when it succeeded. */
  private count(report: ShardReport, item: PlannedRepair, outcome: Outcome): boolean {
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
      return false;
    }
    report.progress[item.plan.target]!.done++;
    if (outcome.kind === "copied") {
      if (item.plan.kind === "restore") report.restored++;
      else report.copied++;
    } else if (outcome.kind === "deleted" || (item.plan.kind === "delete" && outcome.kind === "skipped")) {
      report.deleted++;
    }
    return true;
  }

  /**
   * Reports a comparison's health as it goes: `tick(now)` publishes when asked or when `publishEveryMs` has
   * passed since the last report; `done()` publishes the final one. Each report adds the repairs counted since
   * the one before to the queue's totals.
   */
  private publisher(report: ShardReport, digests: Map<string, ReplicaDigest>) {
    const publish = this.options.publish;
    if (!publish) return undefined;
    const every = this.options.publishEveryMs ?? 2000;
    const sent: RepairTotals = { copied: 0, deleted: 0, restored: 0, failed: 0 };
    let lastAt = 0;
    let chain: Promise<void> = Promise.resolve();
    const send = (): Promise<void> => {
      lastAt = Date.now();
      const now: RepairTotals = {
        copied: report.copied,
        deleted: report.deleted,
        restored: report.restored,
        failed: report.failed,
      };
      const add: RepairTotals = {
        copied: now.copied - sent.copied,
        deleted: now.deleted - sent.deleted,
        restored: now.restored - sent.restored,
        failed: now.failed - sent.failed,
      };
      Object.assign(sent, now);
      const health = shardHealth(report, digests, this.reports.get(report.shard), this.reporter());
      chain = chain
        .then(() => publish(health, add))
        .catch((err: unknown) =>
          this.log.warn(
            { shard: report.shard, err: toBackpackError(err).message },
            "repair health not reported",
          ),
        );
      return chain;
    };
    return {
      tick: (force: boolean): void => {
        if (force || Date.now() - lastAt >= every) void send();
      },
      done: (): Promise<void> => send(),
    };
  }

  /**
   * Waits for room under the files-per-second and bytes-per-second bounds. The allowance saved while repair
   * waits (listing the next bucket, or nothing to do) is at most BURST_SEC's worth: repairs go out evenly
   * spaced, not in bursts that the clients of the same nodes would feel.
   */
  private async pace(bytes: number): Promise<void> {
    const { filesPerSec, bytesPerSec } = this.options;
    const maxFiles = Math.max(1, filesPerSec * BURST_SEC);
    const maxBytes = bytesPerSec * BURST_SEC;
    for (;;) {
      const now = performance.now();
      const sec = (now - this.refilledAt) / 1000;
      this.refilledAt = now;
      this.tokens = Math.min(maxFiles, this.tokens + sec * filesPerSec);
      this.byteTokens = Math.min(maxBytes, this.byteTokens + sec * bytesPerSec);
      // A file larger than the byte allowance goes once the allowance is full, and its debt paces the next.
      const bytesNeeded = Math.min(bytes, maxBytes);
      if (this.tokens >= 1 && this.byteTokens >= bytesNeeded) {
        this.tokens -= 1;
        this.byteTokens -= bytes;
        return;
      }
      const waitFiles = ((1 - this.tokens) / filesPerSec) * 1000;
      const waitBytes = ((bytesNeeded - this.byteTokens) / bytesPerSec) * 1000;
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
