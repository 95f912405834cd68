import type { ClusterMap } from "../cluster/types.js";
import type { Logger } from "../common/logger.js";
import { decodeTask } from "../queue/task.js";
import type { LeasedTask, ReplicationQueue } from "../queue/types.js";
import { AckBatcher } from "./ack-batcher.js";
import type { Copier, Outcome } from "./copier.js";
import type { ReplicatorStats } from "./replicator-stats.js";
import { TargetGate } from "./target-gate.js";

export interface WorkerPoolOptions {
  concurrency: number;
  perTargetConcurrency: number;
  targetDownMinMs: number;
  targetDownMaxMs: number;
  now: () => number;
  random: () => number;
}

/**
 * Runs leased tasks: at most `concurrency` at once, at most `perTargetConcurrency` per target (the others
 * wait in a FIFO per target, still leased), and none for a target paused after transport failures (those
 * are given back to the queue with a delay: a down node is not hammered, its tasks land once it is back).
 */
export class WorkerPool {
  private inflight = 0;
  private readonly waiting = new Map<string, LeasedTask[]>();
  private readonly gate: TargetGate;
  private readonly acks: AckBatcher;
  private idleWaiters: (() => void)[] = [];
  private slotWaiters: (() => void)[] = [];

  constructor(
    private readonly queue: ReplicationQueue,
    private readonly map: ClusterMap,
    private readonly copier: Copier,
    private readonly stats: ReplicatorStats,
    private readonly log: Logger,
    private readonly options: WorkerPoolOptions,
    private readonly signal: AbortSignal,
  ) {
    this.gate = new TargetGate(
      options.perTargetConcurrency,
      options.targetDownMinMs,
      options.targetDownMaxMs,
    );
    this.acks = new AckBatcher(queue, log);
  }

  get active(): number {
    return this.inflight;
  }

  get free(): number {
    return Math.max(0, this.options.concurrency - this.inflight);
  }

  targetsDown(): string[] {
    return this.gate.downTargets(this.options.now());
  }

  /** Resolves once a slot is free (or at once). */
  async slot(): Promise<void> {
    if (this.free > 0) return;
    await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
  }

  /** Resolves once nothing is in flight and every ack is sent. */
  async drain(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.acks.flush();
  }

  submit(leased: LeasedTask): void {
    this.inflight++;
    void this.handle(leased);
  }

  private async handle(leased: LeasedTask): Promise<void> {
    const task = leased.task;
    if (!task) {
      const decoded = decodeTask(leased.raw);
      const reason = `malformed task: ${"error" in decoded ? decoded.error : "unreadable"}`;
      this.log.warn({ id: leased.id, reason }, "dead-lettering a malformed task");
      this.stats.record({ kind: "dead" });
      await this.giveBack(leased.id, reason, { fatal: true });
      this.done();
      return;
    }
    const paused = this.gate.downFor(task.target, this.options.now());
    if (paused > 0) {
      // Back to the queue until the pause ends, plus jitter so the tasks do not all return at once.
      await this.giveBack(leased.id, `target ${task.target} is down`, {
        retryAfterMs: paused + Math.floor(this.options.random() * paused),
      });
      this.done();
      return;
    }
    if (!this.gate.tryEnter(task.target)) {
      const list = this.waiting.get(task.target) ?? [];
      list.push(leased);
      this.waiting.set(task.target, list);
      return;
    }
    await this.runEntered(leased);
  }

  private async runEntered(leased: LeasedTask): Promise<void> {
    const task = leased.task;
    if (!task) return;
    let outcome: Outcome;
    try {
      outcome = await this.copier.run(task, this.map.snapshot(), this.signal);
    } catch (err) {
      outcome = { kind: "retry", reason: `unexpected: ${(err as Error).message}` };
      this.log.error({ err, id: leased.id }, "copy failed unexpectedly");
    }
    this.stats.record(outcome);
    const now = this.options.now();
    switch (outcome.kind) {
      case "copied":
      case "skipped":
      case "deleted":
        this.gate.markUp(task.target);
        this.acks.add(leased.id);
        break;
      case "superseded":
        this.log.debug({ id: leased.id, key: task.key, reason: outcome.reason }, "task superseded");
        this.acks.add(leased.id);
        break;
      case "target-down": {
        const pause = this.gate.markDown(task.target, now);
        this.log.warn({ target: task.target, pauseMs: pause, reason: outcome.reason }, "target unreachable");
        await this.giveBack(leased.id, outcome.reason, {
          retryAfterMs: pause + Math.floor(this.options.random() * pause),
        });
        break;
      }
      case "retry":
        this.log.warn(
          { id: leased.id, key: task.key, reason: outcome.reason, attempts: leased.attempts + 1 },
          "copy failed",
        );
        await this.giveBack(leased.id, outcome.reason, {});
        break;
    }
    this.gate.leave(task.target);
    // The next task waiting for this target takes the slot.
    const next = this.waiting.get(task.target)?.shift();
    if (next) {
      if (this.waiting.get(task.target)?.length === 0) this.waiting.delete(task.target);
      // Still counted in `inflight` since it was submitted.
      void this.handle(next);
    }
    this.done();
  }

  private async giveBack(
    id: string,
    reason: string,
    options: { retryAfterMs?: number; fatal?: boolean },
  ): Promise<void> {
    try {
      await this.queue.fail(id, reason, options);
    } catch (err) {
      // The lease runs out and the task comes back anyway.
      this.log.warn({ id, err: (err as Error).message }, "could not give a task back to the queue");
    }
  }

  private done(): void {
    this.inflight--;
    for (const w of this.slotWaiters.splice(0)) w();
    if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
