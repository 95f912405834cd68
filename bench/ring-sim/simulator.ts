import { KRings } from "../../src/ring/core/k-rings.js";
import { MinHeap } from "../../src/ring/core/min-heap.js";
import type { RingCoreOptions } from "../../src/ring/core/core-config.js";
import type { Message } from "../../src/ring/core/messages.js";
import { RingCore, type Outgoing, type RingEvent } from "../../src/ring/core/ring-core.js";
import { seededRandom } from "./random.js";

/** Network and member conditions of a simulation. Times in virtual ms. */
export interface SimOptions {
  members: number;
  seed: number;
  /** Core settings shared by every member (id and addr are set by the simulator). */
  core: Omit<RingCoreOptions, "id" | "addr">;
  /** One-way latency, uniform in [min, max]. */
  latencyMs?: [number, number];
  /** Probability that any one message is lost. */
  loss?: number;
  /** Serialize every message to count bytes (slower; for the load figures). */
  measureBytes?: boolean;
}

interface SimMember {
  id: string;
  core: RingCore;
  alive: boolean;
  /** Extra delay before this member processes a message it receives (a slow receiver). */
  slowMs: number;
  /** A starved process: frozen for ~freezeMs at a time, running ~runMs in between (see `setStalling`). */
  stall: { freezeMs: number; runMs: number } | undefined;
  frozenUntil: number;
  /** What reached it while frozen, handled in order at the thaw. */
  inbox: SimEvent[];
  group: number;
  wakeAt: number;
}

type SimEvent =
  | { at: number; order: number; kind: "deliver"; to: string; msg: Message }
  | { at: number; order: number; kind: "wake"; to: string }
  | { at: number; order: number; kind: "failed"; to: string; out: Outgoing }
  | { at: number; order: number; kind: "freeze" | "thaw"; to: string };

/**
 * N ring members in one process on a virtual clock: the real `RingCore` of each, a discrete-event network
 * with injected latency, loss, slow receivers and partitions. Nothing sleeps; an hour of cluster time costs
 * only the CPU of the messages it carries.
 */
export class Simulator {
  now = 0;
  readonly members = new Map<string, SimMember>();
  private readonly events = new MinHeap<SimEvent>();
  private order = 0;
  private readonly random: () => number;
  private partitioned = false;
  private readonly listeners: Array<(observer: string, e: RingEvent, now: number) => void> = [];
  messages = 0;
  bytes = 0;
  readonly byType = new Map<string, number>();

  constructor(readonly options: SimOptions) {
    this.random = seededRandom(options.seed);
    const ids = Array.from({ length: options.members }, (_, i) => `m${i}`);
    for (const id of ids) this.add(id);
    const table = [...this.members.values()].map((m) => ({ id: m.id, a: m.id, i: 0, s: 0 as const }));
    const rings = new KRings(options.core.rings ?? 3);
    rings.addAll(ids);
    for (const m of this.members.values()) m.core.bootstrap(table, 0, rings);
    for (const m of this.members.values()) this.schedule(m);
  }

  onEvent(listener: (observer: string, e: RingEvent, now: number) => void): void {
    this.listeners.push(listener);
  }

  ids(): string[] {
    return [...this.members.keys()];
  }

  alive(): SimMember[] {
    return [...this.members.values()].filter((m) => m.alive);
  }

  /** Runs until virtual time `until` (absolute ms). */
  runUntil(until: number): void {
    for (;;) {
      const e = this.events.peek();
      if (!e || e.at > until) break;
      this.events.pop();
      this.now = e.at;
      const m = this.members.get(e.to);
      if (!m || !m.alive) continue;
      if (e.kind === "freeze" || e.kind === "thaw") {
        this.stallStep(m, e.kind);
        continue;
      }
      if (m.frozenUntil > this.now) {
        // Frozen: messages wait, timers wait (the thaw runs whatever came due).
        if (e.kind === "wake") m.wakeAt = Infinity;
        else m.inbox.push(e);
        continue;
      }
      if (e.kind === "deliver" || e.kind === "failed") this.handle(m, e);
      else if (e.at < m.wakeAt) continue;
      else m.wakeAt = Infinity;
      m.core.advance(this.now);
      this.flush(m);
    }
    this.now = until;
  }

  run(durationMs: number): void {
    this.runUntil(this.now + durationMs);
  }

  /** Calls the API of one member (broadcast, leave, ...) at the current virtual time and sends what it produced. */
  act<T>(id: string, fn: (core: RingCore, now: number) => T): T | undefined {
    const m = this.members.get(id);
    if (!m || !m.alive) return undefined;
    const out = fn(m.core, this.now);
    this.flush(m);
    return out;
  }

  /** Crash-stop: the member stops answering; its connections look refused to senders. */
  kill(id: string): void {
    const m = this.members.get(id);
    if (m) m.alive = false;
  }

  /** A fresh process with the same id joins through `seed` (its old incarnation is refuted away). */
  restart(id: string, seed: string): void {
    const m = this.add(id, [seed]);
    this.flush(m);
    this.schedule(m);
  }

  setSlow(id: string, slowMs: number): void {
    const m = this.members.get(id);
    if (m) m.slowMs = slowMs;
  }

  /**
   * A CPU-starved process: it freezes for freezeMs × (0.5-1.5) at a time and runs runMs × (0.5-1.5) in
   * between. At each thaw its due timers fire before the messages that arrived meanwhile are read, as in
   * Node's event loop after a long block: a probe times out although its ack is waiting, a suspicion expires
   * although its refutation is waiting. This is what Lifeguard exists for.
   */
  setStalling(id: string, freezeMs: number, runMs: number): void {
    const m = this.members.get(id);
    if (!m) return;
    m.stall = { freezeMs, runMs };
    this.push({ at: this.now + this.random() * runMs, order: 0, kind: "freeze", to: id });
  }

  private stallStep(m: SimMember, kind: "freeze" | "thaw"): void {
    const stall = m.stall;
    if (!stall) return;
    if (kind === "freeze") {
      m.frozenUntil = this.now + stall.freezeMs * (0.5 + this.random());
      this.push({ at: m.frozenUntil, order: 0, kind: "thaw", to: m.id });
      return;
    }
    m.frozenUntil = 0;
    m.wakeAt = Infinity;
    m.core.advance(this.now);
    for (const e of m.inbox.splice(0)) this.handle(m, e);
    m.core.advance(this.now);
    this.flush(m);
    this.push({ at: this.now + stall.runMs * (0.5 + this.random()), order: 0, kind: "freeze", to: m.id });
  }

  /** A message arriving, or the news that a send failed. */
  private handle(m: SimMember, e: SimEvent): void {
    if (e.kind === "deliver") m.core.receive(e.msg, this.now);
    else if (e.kind === "failed") m.core.sendFailed(e.out, this.now);
  }

  /** Splits members into groups (by `groupOf`) that cannot reach each other until `heal()`. */
  partition(groupOf: (id: string) => number): void {
    for (const m of this.members.values()) m.group = groupOf(m.id);
    this.partitioned = true;
  }

  heal(): void {
    this.partitioned = false;
  }

  private add(id: string, seeds: string[] = []): SimMember {
    const core = new RingCore({ ...this.options.core, id, addr: id, seeds }, this.now, this.random);
    const m: SimMember = {
      id,
      core,
      alive: true,
      slowMs: 0,
      stall: undefined,
      frozenUntil: 0,
      inbox: [],
      group: 0,
      wakeAt: Infinity,
    };
    core.onEvent((e) => {
      for (const l of this.listeners) l(id, e, this.now);
    });
    this.members.set(id, m);
    return m;
  }

  private flush(m: SimMember): void {
    const [lo, hi] = this.options.latencyMs ?? [0.1, 0.3];
    const loss = this.options.loss ?? 0;
    for (const out of m.core.drain()) {
      this.messages++;
      this.byType.set(out.msg.t, (this.byType.get(out.msg.t) ?? 0) + 1);
      if (this.options.measureBytes) this.bytes += Buffer.byteLength(JSON.stringify(out.msg)) + 4;
      const to = this.members.get(out.to);
      const latency = lo + (hi - lo) * this.random();
      if (!to || !to.alive) {
        // A dead process refuses connections: the sender learns it (what TCP tells the real transport).
        this.push({ at: this.now + 2 * latency, order: 0, kind: "failed", to: m.id, out });
        continue;
      }
      if (this.partitioned && to.group !== m.group) continue;
      if (loss > 0 && this.random() < loss) continue;
      const slow = to.slowMs > 0 ? to.slowMs * (0.5 + this.random()) : 0;
      this.push({ at: this.now + latency + slow, order: 0, kind: "deliver", to: to.id, msg: out.msg });
    }
    this.schedule(m);
  }

  private schedule(m: SimMember): void {
    const next = m.core.nextDeadline();
    if (next !== undefined && next < m.wakeAt) {
      m.wakeAt = next;
      this.push({ at: Math.max(next, this.now), order: 0, kind: "wake", to: m.id });
    }
  }

  private push(e: SimEvent): void {
    e.order = this.order++;
    this.events.push(e);
  }
}
