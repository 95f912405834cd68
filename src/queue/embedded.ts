import { setTimeout as sleep } from "node:timers/promises";
import { BackpackError } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import { backoffMs } from "./backoff.js";
import { OpLog } from "./op-log.js";
import { createdAtOf, decodeTask, encodeTask, newTaskId } from "./task.js";
import type {
  DeadLetter,
  FailOptions,
  FoundTask,
  HealthReport,
  LeasedTask,
  QueueOptions,
  QueueStats,
  ReplicationQueue,
  ReplicationTask,
} from "./types.js";

interface Entry {
  raw: string;
  createdAt: number;
  attempts: number;
  dueAt: number;
  /** 0 when not leased. Leases live in memory only: after a restart every task is due again. */
  leasedUntil: number;
  /** Given back last for an unreachable target (see `fail`); cleared when leased again. */
  unreachable: boolean;
}

/** Log records (short names: the log is rewritten often and read at every start). */
type Record =
  | { o: "p"; id: string; raw: string; n?: number; d?: number; u?: 1 }
  | { o: "a"; id: string }
  | { o: "r"; id: string; n: number; d: number; u?: 1 }
  | { o: "d"; id: string; raw: string; reason: string; n: number; f: number };

/** How often a waiting `lease` looks again for tasks whose backoff or lease ran out. */
const POLL_MS = 25;
/** Rewrite the log once it holds this many bytes more than a snapshot would. */
const REWRITE_MIN_BYTES = 4 << 20;

/**
 * The replication queue of the one-process cluster: state in memory, every change in an fsynced op log
 * (`OpLog`, group commit), the log periodically rewritten as a snapshot. A push resolves once durable, so a
 * task survives a SIGKILL from then on. One process owns a directory at a time.
 */
export class EmbeddedQueue implements ReplicationQueue {
  private readonly log: OpLog;
  /** In insertion order; a retried task moves to the end so that one bad target does not block the head. */
  private readonly tasks = new Map<string, Entry>();
  private readonly dead = new Map<string, DeadLetter>();
  /** Repair health by shard: in memory (rebuilt by the replicators' next comparison after a restart). */
  private readonly healthByShard = new Map<string, HealthReport>();
  private repairAsked: { at: number; shards: string[] } | undefined;
  private readonly maxAttempts: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly logger: Logger;
  private wake: (() => void) | undefined;
  private wakeSignal: Promise<void> | undefined;
  private started = false;
  private stopped = false;
  private rewriting: Promise<void> | undefined;

  constructor(dir: string, options: QueueOptions & { log?: Logger } = {}) {
    this.log = new OpLog(dir);
    this.maxAttempts = options.maxAttempts ?? 10;
    this.baseMs = options.backoffBaseMs ?? 500;
    this.maxMs = options.backoffMaxMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.logger = options.log ?? silentLogger;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const { records, skipped } = await this.log.load();
    for (const r of records) this.apply(r as Record);
    if (skipped > 0) this.logger.warn({ skipped, path: this.log.path }, "queue log: skipped damaged lines");
    this.logger.info({ depth: this.tasks.size, deadLetters: this.dead.size }, "embedded queue loaded");
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.rewriting;
    await this.log.close();
    this.wake?.();
  }

  async push(tasks: readonly ReplicationTask[]): Promise<void> {
    this.check();
    const now = this.now();
    const records: Record[] = tasks.map((t) => ({ o: "p", id: newTaskId(now), raw: encodeTask(t) }));
    for (const r of records) this.apply(r);
    this.notify();
    await this.commit(records);
  }

  async lease(max: number, leaseMs: number, waitMs = 0): Promise<LeasedTask[]> {
    this.check();
    const deadline = this.now() + waitMs;
    for (;;) {
      const out = this.take(max, leaseMs);
      const left = deadline - this.now();
      if (out.length > 0 || left <= 0 || this.stopped) return out;
      this.wakeSignal ??= new Promise<void>((resolve) => (this.wake = resolve));
      await Promise.race([this.wakeSignal, sleep(Math.min(POLL_MS, left))]);
    }
  }

  async ack(ids: readonly string[]): Promise<void> {
    this.check();
    const records: Record[] = [];
    for (const id of ids) if (this.tasks.delete(id)) records.push({ o: "a", id });
    if (records.length > 0) await this.commit(records);
  }

  async fail(id: string, reason: string, options: FailOptions = {}): Promise<void> {
    this.check();
    const e = this.tasks.get(id);
    if (!e) return;
    const now = this.now();
    let record: Record;
    if (options.unreachable && !options.fatal) {
      // Not an attempt: the lease that counted it is taken back, so waiting for a node costs nothing.
      const delay = options.retryAfterMs ?? backoffMs(1, this.baseMs, this.maxMs, this.random);
      record = { o: "r", id, n: Math.max(0, e.attempts - 1), d: now + delay, u: 1 };
    } else if (options.fatal || e.attempts >= this.maxAttempts) {
      record = { o: "d", id, raw: e.raw, reason, n: e.attempts, f: now };
      this.logger.warn({ id, reason, attempts: e.attempts }, "task dead-lettered");
    } else {
      const delay = options.retryAfterMs ?? backoffMs(e.attempts, this.baseMs, this.maxMs, this.random);
      record = { o: "r", id, n: e.attempts, d: now + delay };
    }
    this.apply(record);
    await this.commit([record]);
  }

  async expedite(ids: readonly string[]): Promise<void> {
    this.check();
    const now = this.now();
    const records: Record[] = [];
    for (const id of ids) {
      const e = this.tasks.get(id);
      if (!e || e.leasedUntil > now || e.dueAt <= now) continue;
      records.push({ o: "r", id, n: e.attempts, d: now, ...(e.unreachable ? { u: 1 as const } : {}) });
    }
    if (records.length === 0) return;
    for (const r of records) this.apply(r);
    this.notify();
    await this.commit(records);
  }

  async stats(): Promise<QueueStats> {
    const now = this.now();
    let oldest = now;
    let leased = 0;
    let due = 0;
    let unreachable = 0;
    for (const e of this.tasks.values()) {
      if (e.createdAt < oldest) oldest = e.createdAt;
      if (e.leasedUntil > now) leased++;
      else {
        if (e.dueAt <= now) due++;
        if (e.unreachable) unreachable++;
      }
    }
    return {
      depth: this.tasks.size,
      oldestAgeMs: Math.max(0, now - oldest),
      leased,
      due,
      unreachable,
      deadLetters: this.dead.size,
    };
  }

  async deadLetters(limit = 100): Promise<DeadLetter[]> {
    return [...this.dead.values()].slice(0, limit);
  }

  async replay(ids?: readonly string[]): Promise<number> {
    this.check();
    const chosen = ids ?? [...this.dead.keys()];
    const records: Record[] = [];
    for (const id of chosen) {
      const d = this.dead.get(id);
      if (d) records.push({ o: "p", id, raw: d.raw });
    }
    for (const r of records) this.apply(r);
    this.notify();
    if (records.length > 0) await this.commit(records);
    return records.length;
  }

  async find(shard: string, key: string): Promise<FoundTask[]> {
    const now = this.now();
    const out: FoundTask[] = [];
    for (const [id, e] of this.tasks) {
      const decoded = decodeTask(e.raw);
      if (!("task" in decoded) || decoded.task.key !== key || decoded.task.shard !== shard) continue;
      const state = e.leasedUntil > now ? "leased" : e.dueAt <= now ? "due" : "waiting";
      out.push({
        id,
        task: decoded.task,
        state,
        attempts: e.attempts,
        dueAt: state === "waiting" ? e.dueAt : 0,
      });
    }
    return out;
  }

  async putHealth(shard: string, doc: string, add: Readonly<{ [k: string]: number }>): Promise<void> {
    const totals: { [k: string]: number } = { ...this.healthByShard.get(shard)?.totals };
    for (const [k, v] of Object.entries(add)) totals[k] = (totals[k] ?? 0) + v;
    this.healthByShard.set(shard, { shard, doc, totals });
  }

  async health(): Promise<HealthReport[]> {
    return [...this.healthByShard.values()];
  }

  async requestRepair(shards: readonly string[]): Promise<void> {
    this.repairAsked = { at: this.now(), shards: [...shards] };
  }

  async repairRequest(): Promise<{ at: number; shards: string[] } | undefined> {
    return this.repairAsked;
  }

  private take(max: number, leaseMs: number): LeasedTask[] {
    const now = this.now();
    const out: LeasedTask[] = [];
    for (const [id, e] of this.tasks) {
      if (out.length >= max) break;
      if (e.dueAt > now || e.leasedUntil > now) continue;
      const decoded = decodeTask(e.raw);
      out.push({ id, raw: e.raw, attempts: e.attempts, task: "task" in decoded ? decoded.task : undefined });
      e.attempts++;
      e.leasedUntil = now + leaseMs;
      e.unreachable = false;
    }
    return out;
  }

  private apply(r: Record): void {
    switch (r.o) {
      case "p":
        this.dead.delete(r.id);
        this.tasks.set(r.id, {
          raw: r.raw,
          createdAt: createdAtOf(r.raw, this.now()),
          attempts: r.n ?? 0,
          dueAt: r.d ?? 0,
          leasedUntil: 0,
          unreachable: r.u === 1,
        });
        break;
      case "a":
        this.tasks.delete(r.id);
        break;
      case "r": {
        const e = this.tasks.get(r.id);
        if (!e) break;
        this.tasks.delete(r.id);
        this.tasks.set(r.id, { ...e, attempts: r.n, dueAt: r.d, leasedUntil: 0, unreachable: r.u === 1 });
        break;
      }
      case "d":
        this.tasks.delete(r.id);
        this.dead.set(r.id, { id: r.id, raw: r.raw, reason: r.reason, attempts: r.n, failedAt: r.f });
        break;
    }
  }

  private async commit(records: Record[]): Promise<void> {
    try {
      await this.log.append(records);
    } catch (err) {
      throw new BackpackError("UNAVAILABLE", `the queue log cannot be written: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.maybeRewrite();
  }

  /** Compacts the log once it is mostly dead weight; runs between group commits so the snapshot is exact. */
  private maybeRewrite(): void {
    const live = (this.tasks.size + this.dead.size) * 256;
    if (this.rewriting || this.stopped || this.log.bytesSinceRewrite < Math.max(REWRITE_MIN_BYTES, 4 * live))
      return;
    if (!this.log.idle) return;
    const snapshot: Record[] = [];
    for (const [id, e] of this.tasks) {
      snapshot.push({
        o: "p",
        id,
        raw: e.raw,
        n: e.attempts,
        d: e.dueAt,
        ...(e.unreachable ? { u: 1 as const } : {}),
      });
    }
    for (const d of this.dead.values()) {
      snapshot.push({ o: "d", id: d.id, raw: d.raw, reason: d.reason, n: d.attempts, f: d.failedAt });
    }
    this.rewriting = this.log
      .rewrite(snapshot)
      .catch((err: unknown) => this.logger.error({ err }, "queue log rewrite failed (the old log stays)"))
      .finally(() => (this.rewriting = undefined));
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    this.wakeSignal = undefined;
    wake?.();
  }

  private check(): void {
    if (!this.started) throw new BackpackError("UNAVAILABLE", "the queue is not started");
    if (this.stopped) throw new BackpackError("SHUTTING_DOWN", "the queue is stopped");
  }
}
