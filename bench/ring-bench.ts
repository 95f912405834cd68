import { cpus } from "node:os";
import { parseArgs } from "node:util";
import {
  broadcastReach,
  detection,
  falsePositives,
  massFailure,
  partitionHeal,
  placement,
  quantile,
  simulatorSpeed,
  steadyLoad,
} from "./ring-sim/scenarios.js";

/**
 * The ring's simulated targets (issue 7's table), each printed with its setup and, where one exists, a
 * baseline measured in the same run. `--quick` shrinks sizes and durations for a smoke run; `--only t1,t5`
 * picks rows. Usage: node dist/bench/ring-bench.js [--quick] [--only t1,...] [--minutes-t3 10] [--minutes-t4 3]
 */
const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    "minutes-t3": { type: "string" },
    "minutes-t4": { type: "string" },
    seed: { type: "string", default: "1" },
  },
});
const quick = values.quick === true;
const seed = Number(values.seed);
const only = values.only?.split(",").map((s) => s.trim().toLowerCase());
const want = (row: string): boolean => !only || only.includes(row);
const f = (n: number | undefined, d = 0): string =>
  n === undefined || Number.isNaN(n) ? "n/a" : n.toFixed(d);
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

console.log("# ring simulations");
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, Node ${process.version}, one process, virtual clock`,
);
console.log(
  `seed ${seed}${quick ? ", QUICK (reduced sizes: not the issue's setup)" : ""}; latency 0.1-0.3 ms uniform unless noted`,
);
console.log("");

function row(id: string, title: string, run: () => void): void {
  if (!want(id)) return;
  const w0 = performance.now();
  const c0 = cpuSeconds();
  console.log(`## ${id.toUpperCase()} ${title}`);
  run();
  console.log(
    `   (wall ${((performance.now() - w0) / 1000).toFixed(1)} s, cpu ${(cpuSeconds() - c0).toFixed(1)} s)\n`,
  );
}

row("t1", "detection of a killed member (T1 all survivors, T2 first suspicion)", () => {
  const n = quick ? 200 : 1000;
  const kills = quick ? 5 : 20;
  console.log(
    `   setup: N=${n}, T=100 ms, probe timeout 50 ms, k=3, SuspicionMult 3, Lifeguard on, gossip batch 20 ms, ${kills} kills at random phases`,
  );
  const r = detection({ members: n, periodMs: 100, probeTimeoutMs: 50, kills, seed });
  console.log(
    `   all survivors hold it dead: p50 ${f(quantile(r.allDead, 0.5))} ms, p99 ${f(quantile(r.allDead, 0.99))} ms, max ${f(Math.max(...r.allDead))} ms (${r.allDead.length}/${r.kills} kills complete)   target ≤ 1500 ms p99`,
  );
  console.log(
    `   first suspicion: p50 ${f(quantile(r.firstSuspect, 0.5))} ms, p99 ${f(quantile(r.firstSuspect, 0.99))} ms   target ≤ 600 ms p99`,
  );
  console.log(`   false deaths meanwhile: ${r.falseDeaths}`);
});

row("t3", "false positives at 1% message loss", () => {
  const n = quick ? 200 : 1000;
  const minutes = Number(values["minutes-t3"] ?? (quick ? 0.5 : 10));
  console.log(
    `   setup: N=${n}, T=100 ms, probe timeout 50 ms, 1% uniform loss, ${minutes} simulated min, Lifeguard on`,
  );
  const r = falsePositives({
    members: n,
    periodMs: 100,
    probeTimeoutMs: 50,
    durationMs: minutes * 60_000,
    loss: 0.01,
    slowFraction: 0,
    slowMs: 0,
    lifeguard: true,
    seed,
  });
  console.log(`   false deaths: ${r.deaths} (dead events in any view: ${r.deadEvents})   target 0`);
  console.log(
    `   false suspicions: ${r.suspicions} = ${f(r.suspicions / r.minutes, 2)}/min   target ≤ 2/min`,
  );
  console.log(`   load: ${f(r.messagesPerMemberPerSec, 1)} msgs/member/s`);
});

row("t4", "2% slow members (~2 probe periods), Lifeguard on vs off", () => {
  const n = quick ? 200 : 500;
  const minutes = Number(values["minutes-t4"] ?? (quick ? 0.25 : 3));
  console.log(
    `   setup: N=${n}, T=100 ms, probe timeout 50 ms, 2% of members slow, ${minutes} simulated min; two models of a slow member:`,
  );
  console.log("   late  = it receives every message slowMs × (0.5-1.5) late (its timers run on time)");
  console.log(
    "   stall = it freezes for slowMs × (0.5-1.5), runs ~100 ms, freezes again; at each thaw its due timers fire before it reads what arrived",
  );
  console.log(
    "   false deaths = dead events in any view about a member that is alive: about healthy members / about the slow ones",
  );
  const run = (members: number, mins: number, slowModel: "late" | "stall", slowMs: number): void => {
    for (const lifeguard of [true, false]) {
      const r = falsePositives({
        members,
        periodMs: 100,
        probeTimeoutMs: 50,
        durationMs: mins * 60_000,
        loss: 0,
        slowFraction: 0.02,
        slowMs,
        slowModel,
        lifeguard,
        seed,
      });
      console.log(
        `   N=${members} ${slowModel.padEnd(5)} ${String(slowMs).padStart(4)} ms, Lifeguard ${lifeguard ? "on " : "off"}: false deaths ${r.healthyDeadEvents} / ${r.deadEvents - r.healthyDeadEvents} (declared ${r.deaths}), suspicions raised ${r.suspicions}, ${f(r.messagesPerMemberPerSec, 1)} msgs/member/s`,
      );
    }
  };
  for (const slowModel of ["late", "stall"] as const) run(n, minutes, slowModel, 200);
  console.log("   target: 0 false deaths with Lifeguard on (and > 100 with it off)");
  // At ~2 periods the flood carries every suspicion and its refutation well inside the suspicion timeout, so
  // plain SWIM survives too; slower members show what Lifeguard adds.
  const teethMinutes = quick ? 0.25 : 1;
  console.log(`   slower members (N=200, ${teethMinutes} simulated min), where plain SWIM breaks:`);
  run(200, teethMinutes, "late", 1000);
  run(200, teethMinutes, "stall", 500);
});

row("t5", "a delta flooded over the K rings", () => {
  const n = quick ? 300 : 1000;
  console.log(
    `   setup: N=${n}, 20 broadcasts from random members, flood with (origin, seq) de-duplication, no loss`,
  );
  // Every link equally fast: the first copy to arrive has come the fewest hops (the flood's hop count).
  const even = broadcastReach({ members: n, broadcasts: 20, seed, latencyMs: [0.2, 0.2] });
  console.log(
    `   every link 0.2 ms: reached min ${Math.min(...even.reached)}/${n - 1}; hops to the farthest member: p50 ${quantile(even.hops, 0.5)}, p99 ${quantile(even.hops, 0.99)}, max ${Math.max(...even.hops)}   target ≤ 7 hops`,
  );
  // Links 0.1-0.3 ms: the first copy to arrive may have taken more, faster hops.
  const r = broadcastReach({ members: n, broadcasts: 20, seed });
  console.log(
    `   links 0.1-0.3 ms: reached min ${Math.min(...r.reached)}/${n - 1}; hops of the first copy to reach the last member: p50 ${quantile(r.hops, 0.5)}, p99 ${quantile(r.hops, 0.99)}, max ${Math.max(...r.hops)}`,
  );
  console.log(
    `   cost: ${f(r.messagesPerMemberPerBroadcast, 2)} messages per member per broadcast (degree ≤ 6, minus the link it came from)`,
  );
  const lossy = broadcastReach({ members: n, broadcasts: 10, seed, loss: 0.05 });
  console.log(
    `   with 5% loss: reached min ${Math.min(...lossy.reached)}/${n - 1}, max hops ${Math.max(...lossy.hops)}`,
  );
});

row("t6", "80% of members killed at once", () => {
  const n = quick ? 300 : 1000;
  console.log(
    `   setup: N=${n}, T=100 ms, 80% killed in the same instant; overlay = rings of each survivor's own view, live links only`,
  );
  const r = massFailure({ members: n, fraction: 0.8, periodMs: 100, seed });
  console.log(
    `   baseline, old overlay right after the kill: largest component ${r.connectedBeforeRepair}/${r.survivors} survivors (${f((100 * r.connectedBeforeRepair) / r.survivors, 1)}%)`,
  );
  console.log(
    `   overlay reconnects all ${r.survivors} survivors after ${f(r.reconnectedMs)} ms (${f((r.reconnectedMs ?? NaN) / 100, 1)} probe periods); every view clean after ${f(r.viewsCleanMs)} ms`,
  );
  console.log(`   next broadcast reached ${r.nextBroadcastReached}/${r.survivors} survivors   target 100%`);
});

row("t7", "50/50 partition for 60 s, then healed", () => {
  const n = quick ? 200 : 1000;
  console.log(
    `   setup: N=${n}, T=1 s (LAN defaults), halves cannot reach each other for 60 s; healer: 3/N chance per member every 5 s`,
  );
  const r = partitionHeal({ members: n, periodMs: 1000, partitionMs: 60_000, seed });
  console.log(
    `   at heal each member held ${f(r.deadAcrossAtHeal)} members dead; all ${n} agree (same checksum, all alive) ${f((r.agreeMs ?? NaN) / 1000, 1)} s after the heal   target ≤ 30 s`,
  );
});

row("t8", "steady load", () => {
  const n = quick ? 300 : 1000;
  console.log(
    `   setup: N=${n}, T=1 s, token circulating (hold 100 ms), 60 simulated s, bytes = JSON frame bodies + 4-byte length (no HMAC)`,
  );
  const r = steadyLoad({ members: n, periodMs: 1000, durationMs: 60_000, seed });
  console.log(
    `   ${f(r.messagesPerMemberPerSec, 2)} msgs and ${f(r.bytesPerMemberPerSec)} bytes per member per second   target ≤ 3 msgs, ≤ 1 KB`,
  );
  console.log(
    `   by type (msgs/member/s): ${Object.entries(r.byType)
      .map(([k, v]) => `${k} ${v.toFixed(2)}`)
      .join(", ")}; with a secret add 36 bytes per message`,
  );
});

row("t9", "simulator speed", () => {
  console.log("   setup: 1000 members × 60 simulated s at T=1 s, token on");
  const r = simulatorSpeed({ members: 1000, periodMs: 1000, durationMs: 60_000, seed });
  console.log(
    `   run: ${f(r.runWallMs)} ms wall, ${f(r.runCpuMs)} ms CPU for ${r.messages} messages (building 1000 members: ${f(r.buildWallMs)} ms)   target ≤ 2000 ms wall`,
  );
  const fast = simulatorSpeed({ members: 1000, periodMs: 100, durationMs: 60_000, seed });
  console.log(
    `   at T=100 ms: ${f(fast.runWallMs)} ms wall, ${f(fast.runCpuMs)} ms CPU for ${fast.messages} messages   research target ≤ 8000 ms`,
  );
});

row("t10", "placement (consistent hashing)", () => {
  console.log(
    '   setup: 100 members, 200,000 keys; baseline: one position per member (the seed\'s "next one takes over")',
  );
  for (const v of [1, 100, 256]) {
    const r = placement({ members: 100, virtualNodes: v, keys: 200_000 });
    console.log(
      `   V=${String(v).padEnd(3)}: busiest ${f(r.maxOverMean, 2)}× mean, a lost member's keys go to ${r.heirs} heirs, moved keys ${f(r.movedOverIdeal, 2)}× ideal, lookup ${f(r.lookupNs)} ns`,
    );
  }
  console.log("   target (V=256, the default): busiest ≤ 1.25× mean, ≥ 50 heirs, lookup ≤ 1000 ns");
});
