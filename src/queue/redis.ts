import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { BackpackError } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import type { QueueSettings } from "../cluster/types.js";
import { backoffMs } from "./backoff.js";
import { RedisServerLink } from "./redis-server-link.js";
import { ACK, BURY, CLAIM, EXPEDITE, LEASE, PUSH, REPLAY, RETRY, STATS } from "./redis-scripts.js";
import { decodeTask, encodeTask, newTaskId } from "./task.js";
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

export interface RedisQueueOptions extends QueueOptions {
  log?: Logger;
  /** Copies of each task (on different servers). Default 2; every server when fewer are configured. */
  replicas?: number;
  /** Time allowed to one command on a connected server (a frozen server must not hang the queue). */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** How often a waiting `lease` asks again. */
  pollMs?: number;
  /**
   * A task is leased from its home server (the first of its ranking); its copies on the other servers become
   * due only this much later, so that two workers do not take the same task from two servers, while a task
   * whose home is down is still taken over. Default 2000 ms.
   */
  takeoverGraceMs?: number;
}

/**
 * The replication queue over several Redis servers, none a single point of failure (docs/queue.md):
 * - every task is written to `replicas` servers (2 by default, chosen per task by rendezvous hashing so that
 *   load spreads when more are configured); a push succeeds once it is on that many, or, in the degraded
 *   mode when only one server answers, on that one (logged);
 * - a lease is taken on one server with a Lua script and claimed on the others, so two workers rarely get
 *   the same task; when they do (a server was away) the copy is done twice, which tasks allow;
 * - ack / retry / dead-letter are applied on every server that answers; acks missed by a server that was
 *   away are applied when it returns;
 * - a server that is down is skipped at once (no offline queue) and reconnected in the background.
 */
export class RedisQueue implements ReplicationQueue {
  private readonly links: RedisServerLink[];
  private readonly replicas: number;
  private readonly maxAttempts: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly pollMs: number;
  private readonly graceMs: number;
  private readonly log: Logger;
  /** Tasks this process holds a lease on: what `fail` needs to decide and to write a dead letter. */
  private readonly held = new Map<string, { raw: string; attempts: number }>();
  private stopped = false;
  private degradedLogged = false;

  constructor(settings: QueueSettings, options: RedisQueueOptions = {}) {
    if (settings.servers.length === 0) {
      throw new BackpackError("INVALID_ARGUMENT", "the queue settings list no Redis server");
    }
    this.log = options.log ?? silentLogger;
    this.links = settings.servers.map(
      (s) =>
        new RedisServerLink(s, settings.key, this.log, {
          commandTimeoutMs: options.commandTimeoutMs ?? 2000,
          connectTimeoutMs: options.connectTimeoutMs ?? 1000,
        }),
    );
    this.replicas = Math.min(options.replicas ?? 2, this.links.length);
    this.maxAttempts = options.maxAttempts ?? 10;
    this.baseMs = options.backoffBaseMs ?? 500;
    this.maxMs = options.backoffMaxMs ?? 60_000;
    this.random = options.random ?? Math.random;
    this.pollMs = options.pollMs ?? 25;
    this.graceMs = options.takeoverGraceMs ?? 2000;
    this.now = options.now ?? Date.now;
  }

  async start(): Promise<void> {
    await Promise.all(this.links.map((l) => l.connect()));
    const up = this.links.filter((l) => l.up).length;
    if (up === 0) this.log.warn({ servers: this.endpoints() }, "no queue server answers yet; retrying");
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.links.map((l) => l.close()));
  }

  async push(tasks: readonly ReplicationTask[]): Promise<void> {
    this.check();
    if (tasks.length === 0) return;
    const now = this.now();
    const items = tasks.map((t) => ({
      id: newTaskId(now),
      raw: encodeTask(t),
      // A malformed task still gets a valid score; it is dead-lettered when leased.
      createdAt: Number.isFinite(t.createdAt) ? t.createdAt : now,
      stored: 0,
    }));
    const rankings = items.map((item) => this.rank(item.id));
    // Round r writes each item to its r-th ranked server; servers that fail are replaced by the next ones.
    const tried = items.map(() => new Set<number>());
    for (;;) {
      const perServer = new Map<number, typeof items>();
      items.forEach((item, i) => {
        if (item.stored >= this.replicas) return;
        const ranking = rankings[i] ?? [];
        let need = this.replicas - item.stored;
        for (const s of ranking) {
          if (need === 0) break;
          if (tried[i]?.has(s)) continue;
          tried[i]?.add(s);
          need--;
          const list = perServer.get(s) ?? [];
          list.push(item);
          perServer.set(s, list);
        }
      });
      if (perServer.size === 0) break;
      await Promise.all(
        [...perServer].map(async ([s, list]) => {
          const link = this.links[s];
          if (!link?.up) return;
          const args: (string | number)[] = [];
          for (const it of list) args.push(it.id, it.raw, it.createdAt, this.graceOn(s, it.id));
          try {
            await link.run(PUSH, args);
            for (const it of list) it.stored++;
          } catch (err) {
            this.log.warn(
              { server: link.endpoint, err: (err as Error).message },
              "queue push failed on a server",
            );
          }
        }),
      );
    }
    const lost = items.filter((it) => it.stored === 0).length;
    if (lost > 0) {
      throw new BackpackError("UNAVAILABLE", `no queue server accepted the tasks (${this.endpoints()})`, {
        retryAfterSec: 1,
      });
    }
    const degraded = items.some((it) => it.stored < this.replicas);
    if (degraded && !this.degradedLogged) {
      this.degradedLogged = true;
      this.log.warn(
        { servers: this.endpoints(), replicas: this.replicas },
        "queue degraded: tasks are stored on fewer servers than configured until the others answer",
      );
    } else if (!degraded && this.degradedLogged) {
      this.degradedLogged = false;
      this.log.info("queue no longer degraded");
    }
  }

  async lease(max: number, leaseMs: number, waitMs = 0): Promise<LeasedTask[]> {
    this.check();
    const deadline = this.now() + waitMs;
    for (;;) {
      const out = await this.leaseOnce(max, leaseMs);
      const left = deadline - this.now();
      if (out.length > 0 || left <= 0 || this.stopped) return out;
      await sleep(Math.min(this.pollMs, left));
    }
  }

  private async leaseOnce(max: number, leaseMs: number): Promise<LeasedTask[]> {
    const out: LeasedTask[] = [];
    const seen = new Set<string>();
    for (let idx = 0; idx < this.links.length && out.length < max; idx++) {
      const link = this.links[idx];
      if (!link?.up) continue;
      let reply: unknown;
      try {
        reply = await link.run(LEASE, [max - out.length, leaseMs]);
      } catch (err) {
        this.log.warn(
          { server: link.endpoint, err: (err as Error).message },
          "queue lease failed on a server",
        );
        continue;
      }
      const flat = Array.isArray(reply) ? (reply as unknown[]) : [];
      const got: string[] = [];
      for (let i = 0; i + 2 < flat.length; i += 3) {
        const id = String(flat[i]);
        const raw = String(flat[i + 1]);
        const attempts = Number(flat[i + 2]);
        if (seen.has(id)) continue;
        seen.add(id);
        got.push(id);
        const decoded = decodeTask(raw);
        out.push({ id, raw, attempts, task: "task" in decoded ? decoded.task : undefined });
        this.held.set(id, { raw, attempts: attempts + 1 });
      }
      if (got.length > 0) await this.onOthers(idx, CLAIM, [leaseMs, ...got]);
    }
    return out;
  }

  async ack(ids: readonly string[]): Promise<void> {
    this.check();
    if (ids.length === 0) return;
    for (const id of ids) this.held.delete(id);
    const results = await Promise.all(
      this.links.map(async (link) => {
        if (!link.up) {
          link.rememberAcks(ids);
          return false;
        }
        try {
          await link.run(ACK, ids);
          return true;
        } catch {
          link.rememberAcks(ids);
          return false;
        }
      }),
    );
    if (!results.some(Boolean)) {
      throw new BackpackError("UNAVAILABLE", `no queue server answers (${this.endpoints()})`, {
        retryAfterSec: 1,
      });
    }
  }

  async fail(id: string, reason: string, options: FailOptions = {}): Promise<void> {
    this.check();
    const held = this.held.get(id) ?? (await this.lookup(id));
    this.held.delete(id);
    if (!held) return;
    const unreachable = options.unreachable === true && options.fatal !== true;
    if (!unreachable && (options.fatal || held.attempts >= this.maxAttempts)) {
      const failedAt = this.now();
      const letter = JSON.stringify({ raw: held.raw, reason, attempts: held.attempts, failedAt });
      this.log.warn({ id, reason, attempts: held.attempts }, "task dead-lettered");
      await this.onAll(BURY, () => [id, letter, failedAt]);
    } else {
      // Waiting for an unreachable target is not an attempt: its backoff does not grow with the attempts.
      const attempts = unreachable ? 1 : held.attempts;
      const delay = options.retryAfterMs ?? backoffMs(attempts, this.baseMs, this.maxMs, this.random);
      const ms = Math.max(0, Math.round(delay));
      await this.onAll(RETRY, (server) => [id, ms + this.graceOn(server, id), unreachable ? 1 : 0]);
    }
  }

  async expedite(ids: readonly string[]): Promise<void> {
    this.check();
    await Promise.all(
      this.links.map(async (link, server) => {
        if (!link.up) return;
        try {
          for (let i = 0; i < ids.length; i += 1000) {
            const args = ids.slice(i, i + 1000).flatMap((id) => [id, this.graceOn(server, id)]);
            await link.run(EXPEDITE, args);
          }
        } catch {
          // The copies a server missed wait out their backoff there: later, never lost.
        }
      }),
    );
  }

  async stats(): Promise<QueueStats> {
    const per = await Promise.all(
      this.links.map(async (link) => {
        if (!link.up) return undefined;
        try {
          const r = (await link.run(STATS, [])) as unknown[];
          const oldest = Number(r[2]);
          const now = Number(r[4]);
          return {
            depth: Number(r[0]),
            leased: Number(r[1]),
            oldestAgeMs: oldest < 0 ? 0 : Math.max(0, now - oldest),
            dead: Number(r[3]),
            due: Number(r[5] ?? 0),
            unreachable: Number(r[6] ?? 0),
          };
        } catch {
          return undefined;
        }
      }),
    );
    const ok = per.filter((p) => p !== undefined);
    if (ok.length === 0)
      throw new BackpackError("UNAVAILABLE", `no queue server answers (${this.endpoints()})`);
    // Each task is on `replicas` servers: the true count is between the largest per-server count and the sum
    // divided by the copies (equal when every server holds every task).
    const estimate = (f: (p: (typeof ok)[number]) => number): number =>
      Math.max(Math.max(...ok.map(f)), Math.ceil(ok.reduce((a, p) => a + f(p), 0) / this.replicas));
    const depth = estimate((p) => p.depth);
    return {
      depth,
      leased: estimate((p) => p.leased),
      // A task's copies away from its home server are due only after the takeover grace: the sum counts each
      // young task once and an old one up to `replicas` times, so it is capped at the depth.
      due: Math.min(
        depth,
        ok.reduce((a, p) => a + p.due, 0),
      ),
      unreachable: Math.min(
        depth,
        estimate((p) => p.unreachable),
      ),
      deadLetters: estimate((p) => p.dead),
      oldestAgeMs: Math.max(...ok.map((p) => p.oldestAgeMs)),
      servers: this.links.map((l, i) => ({ endpoint: l.endpoint, up: per[i] !== undefined })),
    };
  }

  async deadLetters(limit = 100): Promise<DeadLetter[]> {
    const byId = new Map<string, DeadLetter>();
    for (const link of this.links) {
      if (!link.up) continue;
      try {
        const ids = await link.client.zrange(`${this.keyOf(link)}:dead-at`, 0, limit - 1);
        if (ids.length === 0) continue;
        const recs = await link.client.hmget(`${this.keyOf(link)}:dead`, ...ids);
        ids.forEach((id, i) => {
          if (byId.has(id)) return;
          const letter = parseLetter(id, recs[i] ?? null);
          if (letter) byId.set(id, letter);
        });
      } catch {
        // Listed from the servers that answer.
      }
    }
    return [...byId.values()].sort((a, b) => a.failedAt - b.failedAt).slice(0, limit);
  }

  async replay(ids?: readonly string[]): Promise<number> {
    this.check();
    const chosen = new Set<string>();
    if (ids) for (const id of ids) chosen.add(id);
    else {
      for (const link of this.links) {
        if (!link.up) continue;
        try {
          for (const id of await link.client.hkeys(`${this.keyOf(link)}:dead`)) chosen.add(id);
        } catch {
          // Replayed from the servers that answer.
        }
      }
    }
    if (chosen.size === 0) return 0;
    const list = [...chosen];
    const replayed = new Set<string>();
    for (const link of this.links) {
      if (!link.up) continue;
      try {
        for (let i = 0; i < list.length; i += 1000) {
          const r = (await link.run(REPLAY, list.slice(i, i + 1000))) as unknown[];
          for (const id of r) replayed.add(String(id));
        }
      } catch {
        // Replayed where it answers.
      }
    }
    return replayed.size;
  }

  async find(shard: string, key: string): Promise<FoundTask[]> {
    const byId = new Map<string, FoundTask>();
    for (const link of this.links) {
      if (!link.up) continue;
      try {
        const prefix = this.keyOf(link);
        const matches: { id: string; task: ReplicationTask }[] = [];
        let cursor = "0";
        do {
          const [next, flat] = await link.client.hscan(`${prefix}:tasks`, cursor, "COUNT", 1000);
          cursor = next;
          for (let i = 0; i + 1 < flat.length; i += 2) {
            const decoded = decodeTask(flat[i + 1]!);
            if ("task" in decoded && decoded.task.key === key && decoded.task.shard === shard)
              matches.push({ id: flat[i]!, task: decoded.task });
          }
        } while (cursor !== "0");
        const now = this.now();
        for (const { id, task } of matches) {
          const [leased, due, attempts] = await Promise.all([
            link.client.zscore(`${prefix}:leased`, id),
            link.client.zscore(`${prefix}:due`, id),
            link.client.hget(`${prefix}:attempts`, id),
          ]);
          const state: FoundTask["state"] =
            leased !== null && Number(leased) > now
              ? "leased"
              : due !== null && Number(due) > now
                ? "waiting"
                : "due";
          const found = {
            id,
            task,
            state,
            attempts: Number(attempts ?? 0),
            dueAt: state === "waiting" ? Number(due) : 0,
          };
          // A task is on several servers, due later on those that are not its home (the takeover grace): the
          // most advanced view wins (leased, then due, then the earliest due time).
          const seen = byId.get(id);
          const rank = (f: FoundTask): number => (f.state === "leased" ? 2 : f.state === "due" ? 1 : 0);
          if (!seen || rank(found) > rank(seen) || (rank(found) === 0 && found.dueAt < seen.dueAt))
            byId.set(id, found);
        }
      } catch {
        // Found on the servers that answer.
      }
    }
    return [...byId.values()];
  }

  async putHealth(shard: string, doc: string, add: Readonly<Record<string, number>>): Promise<void> {
    await Promise.all(
      this.links.map(async (link) => {
        if (!link.up) return;
        try {
          const m = link.client.multi().hset(`${this.keyOf(link)}:health`, shard, doc);
          for (const [k, v] of Object.entries(add)) {
            if (v !== 0) m.hincrby(`${this.keyOf(link)}:health-totals:${shard}`, k, v);
          }
          await m.exec();
        } catch {
          // Health is reported again after the next comparison.
        }
      }),
    );
  }

  async health(): Promise<HealthReport[]> {
    const byShard = new Map<string, HealthReport & { at: number }>();
    for (const link of this.links) {
      if (!link.up) continue;
      try {
        const docs = await link.client.hgetall(`${this.keyOf(link)}:health`);
        for (const [shard, doc] of Object.entries(docs)) {
          const totals = await link.client.hgetall(`${this.keyOf(link)}:health-totals:${shard}`);
          const at = updatedAtOf(doc);
          const seen = byShard.get(shard);
          const merged: Record<string, number> = { ...seen?.totals };
          // A server that was away missed some additions: the largest count is the closest.
          for (const [k, v] of Object.entries(totals)) merged[k] = Math.max(merged[k] ?? 0, Number(v));
          byShard.set(
            shard,
            !seen || at > seen.at ? { shard, doc, totals: merged, at } : { ...seen, totals: merged },
          );
        }
      } catch {
        // Read from the servers that answer.
      }
    }
    return [...byShard.values()].map(({ shard, doc, totals }) => ({ shard, doc, totals }));
  }

  async requestRepair(shards: readonly string[]): Promise<void> {
    const doc = JSON.stringify({ at: this.now(), shards });
    await this.onEach((link) => link.client.set(`${this.keyOf(link)}:repair-request`, doc));
  }

  async repairRequest(): Promise<{ at: number; shards: string[] } | undefined> {
    let newest: { at: number; shards: string[] } | undefined;
    for (const link of this.links) {
      if (!link.up) continue;
      try {
        const text = await link.client.get(`${this.keyOf(link)}:repair-request`);
        const r = text === null ? undefined : (JSON.parse(text) as { at: number; shards: string[] });
        if (r && typeof r.at === "number" && Array.isArray(r.shards) && (!newest || r.at > newest.at))
          newest = r;
      } catch {
        // Read from the servers that answer.
      }
    }
    return newest;
  }

  /** Runs `fn` on every server that is up; throws UNAVAILABLE when none took it. */
  private async onEach(fn: (link: RedisServerLink) => Promise<unknown>): Promise<void> {
    const done = await Promise.all(
      this.links.map(async (link) => {
        if (!link.up) return false;
        return fn(link).then(
          () => true,
          () => false,
        );
      }),
    );
    if (!done.some(Boolean)) {
      throw new BackpackError("UNAVAILABLE", `no queue server answers (${this.endpoints()})`, {
        retryAfterSec: 1,
      });
    }
  }

  /** 0 on the task's home server, the takeover grace on the others. */
  private graceOn(server: number, id: string): number {
    return this.rank(id)[0] === server ? 0 : this.graceMs;
  }

  /** Servers ordered for one task id: highest rendezvous weight first (the first is its home). */
  private rank(id: string): number[] {
    if (this.links.length <= this.replicas) return this.links.map((_, i) => i);
    const weights = this.links.map((l, i) => ({
      i,
      w: createHash("sha1").update(`${id}\0${l.endpoint}`).digest().readUInt32BE(0),
    }));
    return weights.sort((a, b) => b.w - a.w).map((x) => x.i);
  }

  private async lookup(id: string): Promise<{ raw: string; attempts: number } | undefined> {
    for (const link of this.links) {
      if (!link.up) continue;
      try {
        const [raw, attempts] = await Promise.all([
          link.client.hget(`${this.keyOf(link)}:tasks`, id),
          link.client.hget(`${this.keyOf(link)}:attempts`, id),
        ]);
        if (raw !== null) return { raw, attempts: Number(attempts ?? 0) };
      } catch {
        // Try the next server.
      }
    }
    return undefined;
  }

  private keyOf(link: RedisServerLink): string {
    return link.prefix;
  }

  private async onAll(script: typeof ACK, args: (server: number) => (string | number)[]): Promise<void> {
    const results = await Promise.all(
      this.links.map(async (link, i) => {
        if (!link.up) return false;
        try {
          await link.run(script, args(i));
          return true;
        } catch {
          return false;
        }
      }),
    );
    if (!results.some(Boolean)) {
      throw new BackpackError("UNAVAILABLE", `no queue server answers (${this.endpoints()})`, {
        retryAfterSec: 1,
      });
    }
  }

  private async onOthers(
    except: number,
    script: typeof ACK,
    args: readonly (string | number)[],
  ): Promise<void> {
    await Promise.all(
      this.links.map(async (link, i) => {
        if (i === except || !link.up) return;
        try {
          await link.run(script, args);
        } catch {
          // A claim that misses a server only risks a duplicate copy, which tasks allow.
        }
      }),
    );
  }

  private endpoints(): string {
    return this.links.map((l) => l.endpoint).join(",");
  }

  private check(): void {
    if (this.stopped) throw new BackpackError("SHUTTING_DOWN", "the queue is stopped");
  }
}

/** `updatedAt` of a health document (0 when it has none). */
function updatedAtOf(doc: string): number {
  try {
    return Number((JSON.parse(doc) as { updatedAt?: unknown }).updatedAt ?? 0) || 0;
  } catch {
    return 0;
  }
}

function parseLetter(id: string, rec: string | null): DeadLetter | undefined {
  if (rec === null) return undefined;
  try {
    const d = JSON.parse(rec) as { raw?: unknown; reason?: unknown; attempts?: unknown; failedAt?: unknown };
    return {
      id,
      raw: typeof d.raw === "string" ? d.raw : "",
      reason: typeof d.reason === "string" ? d.reason : "",
      attempts: Number(d.attempts ?? 0),
      failedAt: Number(d.failedAt ?? 0),
    };
  } catch {
    return { id, raw: rec, reason: "unreadable dead letter", attempts: 0, failedAt: 0 };
  }
}
