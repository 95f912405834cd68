import { HashRing } from "../../src/ring/core/hash-ring.js";
import { quantile, seededRandom } from "./random.js";
import { Simulator, type SimOptions } from "./simulator.js";

/**
 * The simulations behind the ring's target table. Each returns plain numbers; `bench/ring-sim.ts` prints
 * them with their setup, and a few small versions run as tests.
 */

export interface DetectionResult {
  kills: number;
  /** Kill → every survivor holds it dead, ms. */
  allDead: number[];
  /** Kill → first suspicion anywhere, ms. */
  firstSuspect: number[];
  /** Dead declarations (in any view) about members that were alive. */
  falseDeaths: number;
}

export function detection(o: {
  members: number;
  periodMs: number;
  probeTimeoutMs: number;
  kills: number;
  seed: number;
  latencyMs?: [number, number];
}): DetectionResult {
  const sim = new Simulator({
    members: o.members,
    seed: o.seed,
    core: { periodMs: o.periodMs, probeTimeoutMs: o.probeTimeoutMs, token: false },
    latencyMs: o.latencyMs ?? [0.1, 0.3],
  });
  const random = seededRandom(o.seed + 1);
  let victim = "";
  let deadSeen = new Set<string>();
  let suspectAt: number | undefined;
  let falseDeaths = 0;
  let lastDeadAt = 0;
  sim.onEvent((observer, e, now) => {
    if (e.type !== "member") return;
    const id = e.member.id;
    if (e.member.status === "dead") {
      if (id === victim) {
        deadSeen.add(observer);
        lastDeadAt = now;
      } else if (sim.members.get(id)?.alive) falseDeaths++;
    } else if (e.member.status === "suspect" && id === victim) suspectAt ??= now;
  });
  sim.run(20 * o.periodMs);
  const result: DetectionResult = { kills: 0, allDead: [], firstSuspect: [], falseDeaths: 0 };
  for (let k = 0; k < o.kills; k++) {
    // Kill at a random phase of the probe period.
    sim.run(random() * o.periodMs * 5);
    const alive = sim.alive();
    victim = (alive[Math.floor(random() * alive.length)] as { id: string }).id;
    deadSeen = new Set();
    suspectAt = undefined;
    const killedAt = sim.now;
    sim.kill(victim);
    const survivors = alive.length - 1;
    const deadline = killedAt + 200 * o.periodMs;
    while (deadSeen.size < survivors && sim.now < deadline) sim.run(o.periodMs / 4);
    if (deadSeen.size === survivors) result.allDead.push(lastDeadAt - killedAt);
    if (suspectAt !== undefined) result.firstSuspect.push(suspectAt - killedAt);
    result.kills++;
  }
  result.falseDeaths = falseDeaths;
  return result;
}

export interface FalsePositiveResult {
  minutes: number;
  /** Suspicions raised (each accuser counted once) and declarations of death, all about live members. */
  suspicions: number;
  deaths: number;
  /** Member-marked-dead events across all views (one false death seen by 999 members counts 999). */
  deadEvents: number;
  /** The part of `deadEvents` about members that were never slowed (what Lifeguard exists to protect). */
  healthyDeadEvents: number;
  messagesPerMemberPerSec: number;
}

export function falsePositives(o: {
  members: number;
  periodMs: number;
  probeTimeoutMs: number;
  durationMs: number;
  loss: number;
  slowFraction: number;
  slowMs: number;
  /** `late`: slow members receive every message slowMs × (0.5-1.5) late; `stall`: they freeze (setStalling). */
  slowModel?: "late" | "stall";
  /** Running time between freezes for `stall` (default: one period). */
  runMs?: number;
  lifeguard: boolean;
  seed: number;
}): FalsePositiveResult {
  const sim = new Simulator({
    members: o.members,
    seed: o.seed,
    core: { periodMs: o.periodMs, probeTimeoutMs: o.probeTimeoutMs, token: false, lifeguard: o.lifeguard },
    loss: o.loss,
  });
  const ids = sim.ids();
  const slowCount = Math.round(o.slowFraction * o.members);
  const slow = new Set<string>();
  for (let i = 0; i < slowCount; i++) {
    const id = ids[Math.floor((i * ids.length) / slowCount)] as string;
    slow.add(id);
    if (o.slowModel === "stall") sim.setStalling(id, o.slowMs, o.runMs ?? o.periodMs);
    else sim.setSlow(id, o.slowMs);
  }
  let deadEvents = 0;
  let healthyDeadEvents = 0;
  sim.onEvent((_observer, e) => {
    if (e.type !== "member" || e.member.status !== "dead") return;
    deadEvents++;
    if (!slow.has(e.member.id)) healthyDeadEvents++;
  });
  sim.run(o.durationMs);
  let suspicions = 0;
  let deaths = 0;
  for (const m of sim.members.values()) {
    suspicions += m.core.stats.suspicionsRaised;
    deaths += m.core.stats.deathsDeclared;
  }
  return {
    minutes: o.durationMs / 60_000,
    suspicions,
    deaths,
    deadEvents,
    healthyDeadEvents,
    messagesPerMemberPerSec: sim.messages / o.members / (o.durationMs / 1000),
  };
}

export interface BroadcastResult {
  broadcasts: number;
  /** Members reached per broadcast (should be N - 1). */
  reached: number[];
  hops: number[];
  messagesPerMemberPerBroadcast: number;
}

export function broadcastReach(o: {
  members: number;
  broadcasts: number;
  seed: number;
  loss?: number;
  latencyMs?: [number, number];
}): BroadcastResult {
  const sim = new Simulator({
    members: o.members,
    seed: o.seed,
    core: { periodMs: 1000, token: false },
    loss: o.loss ?? 0,
    ...(o.latencyMs ? { latencyMs: o.latencyMs } : {}),
  });
  const reach = new Map<number, { n: number; maxHops: number }>();
  sim.onEvent((_obs, e) => {
    if (e.type !== "delivered") return;
    const r = reach.get(e.broadcast.seq) ?? { n: 0, maxHops: 0 };
    r.n++;
    r.maxHops = Math.max(r.maxHops, e.broadcast.hops);
    reach.set(e.broadcast.seq, r);
  });
  sim.run(2000);
  const random = seededRandom(o.seed + 7);
  let msgs = 0;
  const result: BroadcastResult = {
    broadcasts: o.broadcasts,
    reached: [],
    hops: [],
    messagesPerMemberPerBroadcast: 0,
  };
  for (let b = 0; b < o.broadcasts; b++) {
    const before = sim.byType.get("bcast") ?? 0;
    const id = sim.act(`m${Math.floor(random() * o.members)}`, (core, now) =>
      core.broadcast({ delta: b }, now),
    );
    if (!id) continue;
    const seq = id.seq;
    sim.run(200);
    msgs += (sim.byType.get("bcast") ?? 0) - before;
    const r = reach.get(seq);
    result.reached.push(r?.n ?? 0);
    result.hops.push(r?.maxHops ?? 0);
  }
  result.messagesPerMemberPerBroadcast = msgs / o.broadcasts / o.members;
  return result;
}

export interface MassFailureResult {
  survivors: number;
  /** Survivors in the largest component of the old overlay right after the kill (no repair). */
  connectedBeforeRepair: number;
  /** Time until the survivors' own overlay (rings from their views, live links only) connects them all. */
  reconnectedMs: number | undefined;
  /** Time until every survivor's view holds every killed member dead. */
  viewsCleanMs: number | undefined;
  /** Survivors reached by a broadcast sent once the overlay reconnected. */
  nextBroadcastReached: number;
}

export function massFailure(o: {
  members: number;
  fraction: number;
  periodMs: number;
  seed: number;
}): MassFailureResult {
  const sim = new Simulator({
    members: o.members,
    seed: o.seed,
    core: { periodMs: o.periodMs, token: false },
  });
  sim.run(10 * o.periodMs);
  const random = seededRandom(o.seed + 3);
  const ids = sim.ids().sort(() => random() - 0.5);
  const killed = new Set(ids.slice(0, Math.round(o.fraction * ids.length)));
  for (const id of killed) sim.kill(id);
  const survivors = sim.alive().map((m) => m.id);
  const start = sim.now;
  const connectedBeforeRepair = largestComponent(sim, survivors);
  let reconnectedMs: number | undefined;
  let viewsCleanMs: number | undefined;
  while (sim.now - start < 600 * o.periodMs && (reconnectedMs === undefined || viewsCleanMs === undefined)) {
    // Fine steps until the overlay is whole (so its time is measured to a tenth of a period), then periods.
    sim.run(reconnectedMs === undefined ? o.periodMs / 10 : o.periodMs);
    if (reconnectedMs === undefined && largestComponent(sim, survivors) === survivors.length)
      reconnectedMs = sim.now - start;
    if (
      viewsCleanMs === undefined &&
      survivors.every((s) => [...killed].every((k) => sim.members.get(s)?.core.status(k)?.status === "dead"))
    ) {
      viewsCleanMs = sim.now - start;
    }
  }
  let reached = 0;
  sim.onEvent((_o, e) => {
    if (e.type === "delivered" && e.broadcast.data === "after") reached++;
  });
  sim.act(survivors[0] as string, (core, now) => core.broadcast("after", now));
  sim.run(1000);
  return {
    survivors: survivors.length,
    connectedBeforeRepair,
    reconnectedMs,
    viewsCleanMs,
    nextBroadcastReached: reached + 1,
  };
}

/** Largest set of survivors connected through links of their own current overlays that lead to live members. */
function largestComponent(sim: Simulator, survivors: readonly string[]): number {
  const adj = new Map<string, string[]>();
  for (const s of survivors) adj.set(s, []);
  for (const s of survivors) {
    for (const n of sim.members.get(s)?.core.neighbours() ?? []) {
      if (!adj.has(n)) continue;
      adj.get(s)?.push(n);
      adj.get(n)?.push(s);
    }
  }
  const seen = new Set<string>();
  let best = 0;
  for (const s of survivors) {
    if (seen.has(s)) continue;
    let size = 0;
    const stack = [s];
    seen.add(s);
    while (stack.length > 0) {
      const x = stack.pop() as string;
      size++;
      for (const y of adj.get(x) ?? []) {
        if (!seen.has(y)) {
          seen.add(y);
          stack.push(y);
        }
      }
    }
    best = Math.max(best, size);
  }
  return best;
}

export interface PartitionResult {
  /** Members each side held dead when the partition healed (mean). */
  deadAcrossAtHeal: number;
  /** Heal → every member reports the same checksum and all members alive, ms. */
  agreeMs: number | undefined;
}

export function partitionHeal(o: {
  members: number;
  periodMs: number;
  partitionMs: number;
  seed: number;
}): PartitionResult {
  const sim = new Simulator({
    members: o.members,
    seed: o.seed,
    core: { periodMs: o.periodMs, token: false },
  });
  sim.run(5 * o.periodMs);
  sim.partition((id) => Number(id.slice(1)) % 2);
  sim.run(o.partitionMs);
  let dead = 0;
  for (const m of sim.members.values()) dead += m.core.members().filter((x) => x.status === "dead").length;
  sim.heal();
  const healedAt = sim.now;
  let agreeMs: number | undefined;
  while (sim.now - healedAt < 300_000) {
    sim.run(100);
    const sums = new Set([...sim.members.values()].map((m) => m.core.checksum));
    const first = sim.members.get("m0")?.core;
    if (sums.size === 1 && first && first.members().every((x) => x.status === "alive")) {
      agreeMs = sim.now - healedAt;
      break;
    }
  }
  return { deadAcrossAtHeal: dead / o.members, agreeMs };
}

export interface LoadResult {
  messagesPerMemberPerSec: number;
  bytesPerMemberPerSec: number;
  byType: Record<string, number>;
}

export function steadyLoad(o: {
  members: number;
  periodMs: number;
  durationMs: number;
  seed: number;
}): LoadResult {
  const sim = new Simulator({
    members: o.members,
    seed: o.seed,
    core: { periodMs: o.periodMs },
    measureBytes: true,
  });
  sim.run(o.durationMs);
  const secs = o.durationMs / 1000;
  return {
    messagesPerMemberPerSec: sim.messages / o.members / secs,
    bytesPerMemberPerSec: sim.bytes / o.members / secs,
    byType: Object.fromEntries([...sim.byType].map(([k, v]) => [k, v / o.members / secs])),
  };
}

export interface SpeedResult {
  buildWallMs: number;
  runWallMs: number;
  runCpuMs: number;
  messages: number;
}

export function simulatorSpeed(o: {
  members: number;
  periodMs: number;
  durationMs: number;
  seed: number;
}): SpeedResult {
  const t0 = performance.now();
  const sim = new Simulator({ members: o.members, seed: o.seed, core: { periodMs: o.periodMs } });
  const t1 = performance.now();
  const cpu0 = process.cpuUsage();
  sim.run(o.durationMs);
  const cpu = process.cpuUsage(cpu0);
  return {
    buildWallMs: t1 - t0,
    runWallMs: performance.now() - t1,
    runCpuMs: (cpu.user + cpu.system) / 1000,
    messages: sim.messages,
  };
}

export interface PlacementResult {
  members: number;
  virtualNodes: number;
  maxOverMean: number;
  heirs: number;
  lookupNs: number;
  /** Share of keys that moved when one member left, relative to the ideal 1/N. */
  movedOverIdeal: number;
}

export function placement(o: { members: number; virtualNodes: number; keys: number }): PlacementResult {
  const ids = Array.from({ length: o.members }, (_, i) => `10.0.${i >> 8}.${i & 255}:7000`);
  const ring = new HashRing(ids, o.virtualNodes);
  const keys = Array.from({ length: o.keys }, (_, i) => `bucket/${i}/photo.jpg`);
  const load = new Map<string, number>();
  for (const k of keys) {
    const w = ring.owner(k) as string;
    load.set(w, (load.get(w) ?? 0) + 1);
  }
  const max = Math.max(...load.values());
  const lost = ids[0] as string;
  const after = new HashRing(ids.slice(1), o.virtualNodes);
  const heirs = new Set<string>();
  let moved = 0;
  for (const k of keys) {
    const was = ring.owner(k);
    const now = after.owner(k) as string;
    if (was !== now) moved++;
    if (was === lost) heirs.add(now);
  }
  // Lookup cost: many lookups of distinct keys, best of 5 rounds (the machine is shared).
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    let sink = 0;
    for (const k of keys) sink += (ring.owner(k) as string).length;
    const ns = Number(process.hrtime.bigint() - t0) / keys.length;
    if (sink > 0) best = Math.min(best, ns);
  }
  return {
    members: o.members,
    virtualNodes: o.virtualNodes,
    maxOverMean: max / (o.keys / o.members),
    heirs: heirs.size,
    lookupNs: best,
    movedOverIdeal: moved / o.keys / (1 / o.members),
  };
}

export { quantile, type SimOptions };
