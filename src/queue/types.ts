/**
 * The replication queue: small task records that say what to copy (or delete) where. Two implementations share
 * one test suite: `redis.ts` (several Redis servers, none a single point of failure) and `embedded.ts` (a
 * durable on-disk queue for the one-process cluster).
 */

export interface ReplicationTask {
  /** `copy`: make `target` hold the object; `delete`: remove it from `target`. */
  op: "copy" | "delete";
  shard: string;
  /** Server ids that hold the object (the first is where the coordinator wrote it). Empty for `delete`. */
  sources: string[];
  /** Server id to copy to (or delete from). */
  target: string;
  key: string;
  /** CRC-32 of the body as 8 hex digits; the copy is verified against it, and skipped if the target has it. */
  crc: string;
  size: number;
  /** ms since the epoch when the coordinator queued it (for replication lag). */
  createdAt: number;
  /**
   * The version of the write or delete (`formatVersion`): the copy or tombstone carries it, and a target
   * holding a newer version refuses it. Absent only in tasks queued before versions existed.
   */
  version?: string;
}

export interface LeasedTask {
  /** Queue-assigned id, stable across retries and servers. */
  id: string;
  /** The parsed task, or undefined when the stored payload is malformed (dead-letter it with `fail(..., {fatal})`). */
  task: ReplicationTask | undefined;
  /** The stored payload as text (for dead letters and logs). */
  raw: string;
  /** How many times it was leased before this one. */
  attempts: number;
}

export interface DeadLetter {
  id: string;
  raw: string;
  reason: string;
  attempts: number;
  failedAt: number;
}

export interface QueueStats {
  /** Tasks waiting or leased (not yet acknowledged, not dead). */
  depth: number;
  /** Age of the oldest task not yet acknowledged, ms (0 when empty): the replication lag. */
  oldestAgeMs: number;
  /** Tasks currently leased. */
  leased: number;
  /**
   * Tasks due now and not leased: the copies waiting for a replicator (tasks held back for a target that is
   * down, or for a retry, are not due). What coordinators bound with `--max-backlog`.
   */
  due: number;
  /**
   * Tasks given back because their target (or source) could not be reached (down, disk full): they wait
   * with backoff and cost no attempt, however long that takes. Not counted while leased.
   */
  unreachable: number;
  deadLetters: number;
  /** Redis only: each configured server and whether it answers right now. */
  servers?: { endpoint: string; up: boolean }[];
}

export interface QueueOptions {
  /** Attempts before a task is dead-lettered. Default 10. */
  maxAttempts?: number;
  /** Backoff after a failure: base × 2^attempts with full jitter, capped. Defaults 500 ms and 60 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Injected for tests: clock (ms since the epoch) and randomness in [0, 1) for jitter. */
  now?: () => number;
  random?: () => number;
}

export interface FailOptions {
  retryAfterMs?: number;
  fatal?: boolean;
  unreachable?: boolean;
}

/** A task found by `find`, and where it stands. */
export interface FoundTask {
  id: string;
  task: ReplicationTask;
  /** `leased`: a replicator works on it now; `due`: waiting for one; `waiting`: held back (retry backoff, or its node is down). */
  state: "leased" | "due" | "waiting";
  attempts: number;
  /** When it is due again (ms since the epoch); 0 when due or leased. */
  dueAt: number;
}

/**
 * A shard's repair health as the replicators last reported it: the document of the last report (`doc`, JSON
 * written by the replicator, see replicator/health.ts) and the repairs counted since the queue began (`totals`,
 * added by every report, so that several replicators' work adds up).
 */
export interface HealthReport {
  shard: string;
  doc: string;
  totals: Record<string, number>;
}

export interface ReplicationQueue {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stores tasks durably; resolves only when they will not be lost (throws UNAVAILABLE otherwise). */
  push(tasks: readonly ReplicationTask[]): Promise<void>;
  /**
   * Leases up to `max` due tasks for `leaseMs`; a lease that expires without ack makes the task due again
   * (another worker takes it over). Waits up to `waitMs` for work when none is due.
   */
  lease(max: number, leaseMs: number, waitMs?: number): Promise<LeasedTask[]>;
  ack(ids: readonly string[]): Promise<void>;
  /**
   * Gives a leased task back: retried after a backoff with jitter (or `retryAfterMs`), dead-lettered after
   * `maxAttempts`, or at once when `fatal` (malformed payload). With `unreachable` the task was not really
   * tried (its target is down or full): this lease is not counted as an attempt, the task is never
   * dead-lettered for it, and it is counted in `stats().unreachable` until it is leased again.
   */
  fail(id: string, reason: string, options?: FailOptions): Promise<void>;
  /**
   * Makes tasks that wait for their retry due now (a replicator saw their target answer again: its copies go
   * at once instead of at the end of their backoff). Tasks leased, acknowledged, dead or already due are left
   * as they are; unknown ids are ignored.
   */
  expedite(ids: readonly string[]): Promise<void>;
  stats(): Promise<QueueStats>;
  deadLetters(limit?: number): Promise<DeadLetter[]>;
  /** Puts dead letters back in the queue (all when `ids` is omitted); returns how many. */
  replay(ids?: readonly string[]): Promise<number>;
  /**
   * The tasks (not dead letters) for one key of one shard. An operator's lookup: it reads every task
   * (O(depth)), so it is not for the data path.
   */
  find(shard: string, key: string): Promise<FoundTask[]>;
  /** Stores a shard's health document (replacing the last one) and adds `add` to its totals. */
  putHealth(shard: string, doc: string, add: Readonly<Record<string, number>>): Promise<void>;
  /** Every shard's last health report. */
  health(): Promise<HealthReport[]>;
  /** Asks the replicators to compare these shards (every shard when empty) now, not at their next interval. */
  requestRepair(shards: readonly string[]): Promise<void>;
  /** The last repair request: when (ms since the epoch) and for which shards (empty: all); undefined if none. */
  repairRequest(): Promise<{ at: number; shards: string[] } | undefined>;
}
