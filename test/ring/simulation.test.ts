import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  broadcastReach,
  detection,
  falsePositives,
  massFailure,
  partitionHeal,
} from "../../bench/ring-sim/scenarios.js";
import { Simulator } from "../../bench/ring-sim/simulator.js";

// Small versions of the benchmark scenarios: the real RingCore of every member on a virtual clock, so the
// bounds below are in simulated time and the runs are deterministic (fixed seeds).

void describe("ring simulation", () => {
  void it("every survivor marks a killed member dead, with no false deaths", () => {
    const r = detection({ members: 60, periodMs: 100, probeTimeoutMs: 50, kills: 3, seed: 11 });
    assert.equal(r.allDead.length, 3, "every kill was seen by every survivor");
    assert.ok(Math.max(...r.allDead) < 5000, `detected in ${r.allDead.join(", ")} ms`);
    assert.equal(r.falseDeaths, 0);
  });

  void it("floods a broadcast to every member in a few hops, also with 5% loss", () => {
    const r = broadcastReach({ members: 200, broadcasts: 5, seed: 5 });
    assert.deepEqual(r.reached, [199, 199, 199, 199, 199]);
    assert.ok(Math.max(...r.hops) <= 8, `hops ${r.hops.join(",")}`);
    const lossy = broadcastReach({ members: 200, broadcasts: 5, seed: 5, loss: 0.05 });
    assert.ok(Math.min(...lossy.reached) >= 195, `reached ${lossy.reached.join(",")}`);
  });

  /** 60 members at T = 100 ms for 10 s, 5% of them slowed by 200 ms, Lifeguard on. */
  const slowSetup = {
    members: 60,
    periodMs: 100,
    probeTimeoutMs: 50,
    durationMs: 10_000,
    slowFraction: 0.05,
    slowMs: 200,
    lifeguard: true,
    seed: 3,
  };

  void it("keeps slow members alive with Lifeguard", () => {
    const r = falsePositives({ ...slowSetup, loss: 0.01 });
    assert.equal(r.deaths, 0);
    assert.equal(r.deadEvents, 0);
  });

  void it("keeps members alive that freeze for two periods at a time (timers first at each thaw)", () => {
    const r = falsePositives({ ...slowSetup, loss: 0, slowModel: "stall" });
    assert.ok(r.suspicions > 0, "the freezes did raise suspicions");
    assert.equal(r.deaths, 0);
    assert.equal(r.deadEvents, 0);
  });

  void it("never lets members whose messages arrive a second late kill healthy ones (Lifeguard off does)", () => {
    // A slow member suspects the healthy members it probes. Its lone accusation must wait out the long
    // Lifeguard timeout: the same suspicion coming back to it from others (in a sync, relayed) is not a second
    // accuser. Without Lifeguard the short timeout expires before the refutation reaches the slow member.
    const setup = {
      ...slowSetup,
      members: 100,
      slowFraction: 0.02,
      durationMs: 20_000,
      slowMs: 1000,
      loss: 0,
    };
    const on = falsePositives(setup);
    assert.ok(on.suspicions > 0, "the slow members did accuse others");
    assert.equal(on.healthyDeadEvents, 0);
    const off = falsePositives({ ...setup, lifeguard: false });
    assert.ok(off.healthyDeadEvents > 0, "plain SWIM let slow members kill healthy ones");
  });

  void it("re-merges the two halves of a healed partition", () => {
    const r = partitionHeal({ members: 40, periodMs: 200, partitionMs: 20_000, seed: 2 });
    assert.ok(r.deadAcrossAtHeal > 10, "each half had declared the other dead");
    assert.ok(r.agreeMs !== undefined && r.agreeMs < 60_000, `agreed after ${r.agreeMs} ms`);
  });

  void it("reconnects the survivors of an 80% failure and reaches them all", () => {
    const r = massFailure({ members: 100, fraction: 0.8, periodMs: 100, seed: 4 });
    assert.ok(r.connectedBeforeRepair < r.survivors, "the kill did cut the old overlay");
    // Refused connections repair the overlay at once, long before the detector declares the dead.
    assert.ok(
      r.reconnectedMs !== undefined && r.reconnectedMs <= 100,
      `reconnected after ${r.reconnectedMs} ms`,
    );
    assert.ok(r.viewsCleanMs !== undefined, "every survivor's view dropped every dead member");
    assert.equal(r.nextBroadcastReached, r.survivors);
  });

  void it("takes a restarted member back and forgets nothing on a leave", () => {
    const sim = new Simulator({
      members: 30,
      seed: 9,
      core: { periodMs: 100, probeTimeoutMs: 50, tokenHoldMs: 5 },
    });
    sim.run(3000);
    sim.kill("m7");
    sim.run(10_000);
    assert.ok(sim.alive().every((m) => m.core.status("m7")?.status === "dead"));
    sim.restart("m7", "m0");
    sim.run(5000);
    assert.ok(
      sim.alive().every((m) => m.core.status("m7")?.status === "alive"),
      "m7 rejoined everywhere",
    );
    sim.act("m3", (core, now) => core.leave(now));
    sim.kill("m3");
    sim.run(2000);
    assert.ok(sim.alive().every((m) => m.core.status("m3")?.status === "left"));
    const sums = new Set(sim.alive().map((m) => m.core.checksum));
    assert.equal(sums.size, 1, "all views equal");
    const ticks = sim.alive().map((m) => m.core.tokenView().tick);
    assert.ok(Math.max(...ticks) - Math.min(...ticks) <= 1, `ticks agree within one lap: ${ticks.join(",")}`);
  });
});
