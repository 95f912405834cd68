import type { ClusterMap } from "../cluster/types.js";
import type { Logger } from "../common/logger.js";
import { decodeTask } from "../queue/task.js";
import type { FailOptions, LeasedTask, ReplicationQueue } from "../queue/types.js";
import { AckBatcher } from "./ack-batcher.js";
import type { Copier, Outcome } from "./copier.js";
import type { ReplicatorStats } from "./replicator-stats.js";
import { TargetGate } from "./target-gate.js";
import { TargetWatch } from "./target-watch.js";

export interface WorkerPoolOptions {
  concurrency: number;
  perTargetConcurrency: number;
  targetDownMinMs: number;
  targetDownMaxMs: number;
  now: () => number;
  random: () => number;
  /** Whether a target that stopped answering answers again (asked every `probeEveryMs` while it is away). */
  probe?: (target: string) => Promise<boolean>;
  probeEveryMs?: number;
}

/** Ids of the tasks given back for one target that the pool remembers, to send them at once when it is back. */
const MAX_WAITING_IDS = 10_000;

/**
 * Runs leased tasks: at most `concurrency` at once, at most `perTargetConcurrency` per target, and none for a
 * target paused after transport failures (those go back to the queue with a delay: a down node is not
 * hammered, its tasks land once it is back). A task given back for an unreachable target spends no attempt
 * (`unreachable`), so it is never dead-lettered for waiting, however long the node is away. Up to
 * `concurrency` more leased tasks wait in a backlog, so that a finished copy is followed at once by the next
 * one instead of by a queue round trip. A target that stopped answering is asked every second whether it is
 * back; once it is (or a copy to it succeeds), the tasks given back for it are made due at once
 * (`queue.expedite`) instead of waiting out their backoff.
 */
export class WorkerPool {
  /** Leased and not finished: running plus backlog. */
  private inflight = 0;
  private running = 0;
  private readonly backlog: LeasedTask[] = [];
  private readonly gate: TargetGate;
  private readonly acks: AckBatcher;
  private idleWaiters: (() => void)[] = [];
  private roomWaiters: (() => void)[] = [];
  /** Target → ids of the tasks given back while it was away (not leased since). */
  private readonly waiting = new Map<string, Set<string>>();
  private readonly watch: TargetWatch | undefined;

  constructor(
    private readonly queue: ReplicationQueue,
    private readonly map: ClusterMap,
    private readonly copier: Copier,
    private readonly stats: ReplicatorStats,
    private readonly log: Logger,
    private readonly options: WorkerPoolOptions,
  ) {
    this.gate = new TargetGate(
      options.perTargetConcurrency,
      options.targetDownMinMs,
      options.targetDownMaxMs,
    );
    this.acks = new AckBatcher(queue, log);
    if (options.probe) {
      this.watch = new TargetWatch(options.probe, (t) => this.back(t), options.probeEveryMs ?? 1000);
    }
  }

  get active(): number {
    return this.inflight;
  }

  /** How many more tasks may be leased now. */
  get free(): number {
    return Math.max(0, 2 * this.options.concurrency - this.inflight);
  }

  /** The ring's verdict on a target: held (suspect or dead) targets get no copies until released. */
  setTargetHeld(target: string, held: boolean): void {
    this.gate.setHeld(target, held, this.options.now());
    if (!held) this.pump();
  }

  targetsDown(): string[] {
    return this.gate.downTargets();
  }

  /** Resolves once there is room for a worthwhile lease (half the concurrency), or at once. */
  async room(): Promise<void> {
    if (this.free >= this.threshold) return;
    await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  /** Resolves once nothing is in flight and every ack is sent; targets are no longer watched. */
  async drain(): Promise<void> {
    this.watch?.stop();
    if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.acks.flush();
  }

  submit(leased: LeasedTask): void {
    this.inflight++;
    const task = leased.task;
    if (!task) {
      void this.deadLetter(leased);
      return;
    }
    this.waiting.get(task.target)?.delete(leased.id);
    if (this.gate.downFor(task.target, this.options.now()) > 0) {
      void this.deferPaused(leased, task.target);
      return;
    }
    this.backlog.push(leased);
    this.pump();
  }

  private get threshold(): number {
    return Math.max(1, Math.floor(this.options.concurrency / 2));
  }

  /** Starts backlog tasks while there is room, oldest first, skipping targets at their limit. */
  private pump(): void {
    const now = this.options.now();
    for (let i = 0; i < this.backlog.length && this.running < this.options.concurrency;) {
      const leased = this.backlog[i];
      const target = leased?.task?.target;
      if (!leased || target === undefined) {
        this.backlog.splice(i, 1);
        continue;
      }
      if (this.gate.downFor(target, now) > 0) {
        this.backlog.splice(i, 1);
        void this.deferPaused(leased, target);
        continue;
      }
      if (this.gate.tryEnter(target)) {
        this.backlog.splice(i, 1);
        this.running++;
        void this.runEntered(leased, target);
        continue;
      }
      i++;
    }
  }

  private async deadLetter(leased: LeasedTask): Promise<void> {
    const decoded = decodeTask(leased.raw);
    const reason = `malformed task: ${"error" in decoded ? decoded.error : "unreadable"}`;
    this.log.warn({ id: leased.id, reason }, "dead-lettering a malformed task");
    this.stats.record({ kind: "dead" });
    await this.giveBack(leased.id, reason, { fatal: true });
    this.done();
  }

  /** Back to the queue until the target's pause ends, plus jitter so the tasks do not all return at once. */
  private async deferPaused(leased: LeasedTask, target: string): Promise<void> {
    const paused = this.gate.downFor(target, this.options.now());
    this.remember(target, leased.id);
    await this.waitForTarget(leased.id, `target ${target} is down`, paused);
    this.done();
  }

  private remember(target: string, id: string): void {
    let ids = this.waiting.get(target);
    if (!ids) this.waiting.set(target, (ids = new Set()));
    if (ids.size < MAX_WAITING_IDS) ids.add(id);
  }

  /**
   * A target that had failed answers again: one log line, and the copies given back for it go now. Those past
   * MAX_WAITING_IDS, or given back by another replicator, come at the end of their backoff.
   */
  private back(target: string): void {
    this.gate.markUp(target);
    this.watch?.unwatch(target);
    const ids = [...(this.waiting.get(target) ?? [])];
    this.waiting.delete(target);
    this.log.info({ target, waiting: ids.length }, "target reachable again; its waiting copies go now");
    if (ids.length === 0) return;
    this.queue.expedite(ids).catch((err: unknown) => {
      this.log.warn({ target, err: (err as Error).message }, "could not expedite the copies for a target");
    });
  }

  /** Gives a task back for an unreachable target: no attempt spent, counted as waiting for its node. */
  private async waitForTarget(id: string, reason: string, pauseMs: number): Promise<void> {
    this.stats.recordHeldBack();
    await this.giveBack(id, reason, {
      retryAfterMs: pauseMs + Math.floor(this.options.random() * pauseMs),
      unreachable: true,
    });
  }

  private async runEntered(leased: LeasedTask, target: string): Promise<void> {
    const task = leased.task;
    let outcome: Outcome;
    try {
      if (!task) throw new Error("no task");
      outcome = await this.copier.run(task, this.map.snapshot());
    } catch (err) {
      outcome = { kind: "retry", reason: `unexpected: ${(err as Error).message}` };
      this.log.error({ err, id: leased.id }, "copy failed unexpectedly");
    }
    this.stats.record(outcome);
    switch (outcome.kind) {
      case "copied":
      case "skipped":
      case "deleted":
        if (this.gate.markUp(target)) this.back(target);
        this.acks.add(leased.id);
        break;
      case "superseded":
        this.log.debug({ id: leased.id, key: task?.key, reason: outcome.reason }, "task superseded");
        this.acks.add(leased.id);
        break;
      case "target-down": {
        const pause = this.gate.markDown(target, this.options.now());
        this.log.warn({ target, pauseMs: pause, reason: outcome.reason }, "target unreachable");
        // Only a target that does not answer is asked whether it is back; a full one answers all along.
        if (!outcome.answered) this.watch?.watch(target);
        this.remember(target, leased.id);
        await this.waitForTarget(leased.id, outcome.reason, pause);
        break;
      }
      case "sources-down":
        // Not the target's fault: it stays up; the task waits (no attempt spent) like one for a target away.
        this.log.warn({ id: leased.id, key: task?.key, reason: outcome.reason }, "no source reachable");
        await this.waitForTarget(leased.id, outcome.reason, Math.min(5000, this.options.targetDownMaxMs));
        break;
      case "retry":
        this.log.warn(
          { id: leased.id, key: task?.key, reason: outcome.reason, attempts: leased.attempts + 1 },
          "copy failed",
        );
        await this.giveBack(leased.id, outcome.reason, {});
        break;
    }
    this.gate.leave(target);
    this.running--;
    this.done();
    this.pump();
  }

  private async giveBack(id: string, reason: string, options: FailOptions): Promise<void> {
    try {
      await this.queue.fail(id, reason, options);
    } catch (err) {
      // The lease runs out and the task comes back anyway.
      this.log.warn({ id, err: (err as Error).message }, "could not give a task back to the queue");
    }
  }

  private done(): void {
    this.inflight--;
    if (this.free >= this.threshold) for (const w of this.roomWaiters.splice(0)) w();
    if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
