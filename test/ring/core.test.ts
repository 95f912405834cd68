import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HashRing } from "../../src/ring/core/hash-ring.js";
import { KRings } from "../../src/ring/core/k-rings.js";
import { suspicionBounds, suspicionTimeoutMs, LocalHealth } from "../../src/ring/core/lifeguard.js";
import { MemberTable } from "../../src/ring/core/member-table.js";
import { parseMessage, type Message, type Update } from "../../src/ring/core/messages.js";
import { RingCore, type RingEvent } from "../../src/ring/core/ring-core.js";
import { RecentSamples } from "../../src/ring/core/recent-samples.js";
import { stampHandOver, TokenKeeper } from "../../src/ring/core/token.js";
import { seededRandom } from "../../bench/ring-sim/random.js";

const upd = (id: string, i: number, s: 0 | 1 | 2 | 3): Update => ({ id, a: `${id}:1`, i, s });

void describe("member table", () => {
  void it("orders updates by incarnation, then alive < suspect < dead < left", () => {
    const t = new MemberTable();
    assert.ok(t.apply(upd("a", 1, 0), 0));
    assert.equal(t.apply(upd("a", 0, 2), 1), undefined, "an older incarnation never wins");
    assert.ok(t.apply(upd("a", 1, 1), 2));
    assert.equal(
      t.apply(upd("a", 1, 0), 3),
      undefined,
      "alive does not undo a suspicion at the same incarnation",
    );
    assert.ok(t.apply(upd("a", 2, 0), 4), "a refutation (higher incarnation) wins");
    assert.ok(t.apply(upd("a", 2, 2), 5));
    assert.ok(t.apply(upd("a", 2, 3), 6));
    assert.equal(t.get("a")?.status, "left");
  });

  void it("gives equal checksums to tables that saw the same updates in any order", () => {
    const updates = [
      upd("a", 1, 0),
      upd("b", 0, 0),
      upd("a", 1, 1),
      upd("c", 3, 2),
      upd("b", 2, 0),
      upd("c", 1, 0),
    ];
    const random = seededRandom(7);
    const sums = new Set<number>();
    for (let trial = 0; trial < 20; trial++) {
      const t = new MemberTable();
      const order = [...updates].sort(() => random() - 0.5);
      for (const u of order) t.apply(u, 0);
      sums.add(t.checksum);
    }
    assert.equal(sums.size, 1);
    const other = new MemberTable();
    other.apply(upd("a", 1, 0), 0);
    assert.notEqual(other.checksum, [...sums][0]);
  });
});

void describe("K rings and placement", () => {
  void it("derives the same rings from the same view whatever the insertion order, and repairs by removal", () => {
    const ids = Array.from({ length: 50 }, (_, i) => `n${i}`);
    const a = new KRings(3);
    const b = new KRings(3);
    for (const id of ids) a.add(id);
    b.addAll([...ids].reverse());
    for (let r = 0; r < 3; r++) assert.deepEqual(a.order(r), b.order(r));
    assert.notDeepEqual(a.order(0), a.order(1), "rings are different permutations");
    const victim = a.successor(0, "n0") as string;
    const after = a.successor(0, victim) as string;
    a.remove(victim);
    assert.equal(a.successor(0, "n0"), after, "the ring closes over a removed member");
    const nb = a.neighbours("n0");
    assert.ok(nb.length >= 3 && nb.length <= 6 && !nb.includes("n0"));
    // Stepping over members (unreachable ones) takes the next along each ring, without removing them.
    const skipped = new Set(nb);
    const next = a.neighbours("n0", (id) => skipped.has(id));
    assert.ok(next.length >= 3 && next.every((id) => !skipped.has(id) && id !== "n0"));
    assert.ok(
      next.includes(a.successor(0, "n0", 2) as string) || skipped.has(a.successor(0, "n0", 2) as string),
    );
    assert.deepEqual(a.neighbours("n0"), nb, "nothing was removed");
  });

  void it("spreads keys evenly over 100 members and a lost member's keys over many heirs", () => {
    const ids = Array.from({ length: 100 }, (_, i) => `10.0.0.${i}:7000`);
    const ring = new HashRing(ids, 128);
    const load = new Map<string, number>();
    const keys = Array.from({ length: 50_000 }, (_, i) => `key-${i}`);
    for (const k of keys) {
      const o = ring.owner(k) as string;
      load.set(o, (load.get(o) ?? 0) + 1);
    }
    const max = Math.max(...load.values());
    assert.ok(max / (keys.length / 100) <= 1.4, `busiest member carries ${max} keys`);
    const lost = ids[3] as string;
    const smaller = new HashRing(
      ids.filter((id) => id !== lost),
      128,
    );
    const heirs = new Set<string>();
    for (const k of keys) {
      if (ring.owner(k) === lost) heirs.add(smaller.owner(k) as string);
      else assert.equal(smaller.owner(k), ring.owner(k), "only the lost member's keys move");
    }
    assert.ok(heirs.size >= 40, `keys spread over ${heirs.size} heirs`);
    const three = ring.ownersOf("some/key", 3);
    assert.equal(new Set(three).size, 3);
    assert.equal(three[0], ring.owner("some/key"));
    assert.deepEqual(new HashRing([]).ownersOf("x", 3), []);
  });
});

void describe("Lifeguard", () => {
  void it("shrinks the suspicion timeout with confirmations, from max to min", () => {
    const b = suspicionBounds(1000, 100, 3, 6, true);
    assert.equal(b.minMs, 900);
    assert.equal(b.maxMs, 5400);
    assert.equal(suspicionTimeoutMs(b, 0), 5400);
    assert.equal(suspicionTimeoutMs(b, b.k), 900);
    const off = suspicionBounds(1000, 100, 3, 6, false);
    assert.equal(suspicionTimeoutMs(off, 0), 900);
  });

  void it("saturates local health between 0 and max-1", () => {
    const h = new LocalHealth(8, true);
    for (let i = 0; i < 20; i++) h.apply(1);
    assert.equal(h.multiplier, 8);
    for (let i = 0; i < 20; i++) h.apply(-1);
    assert.equal(h.multiplier, 1);
    const off = new LocalHealth(8, false);
    off.apply(5);
    assert.equal(off.multiplier, 1);
  });
});

void describe("token", () => {
  void it("measures laps clock-free, counts ticks at the wrap and drops a lower epoch", () => {
    const a = new TokenKeeper("a", 0);
    const b = new TokenKeeper("b", 0);
    a.create(0);
    let t = a.release(10, false);
    assert.ok(t);
    assert.ok(b.accept(t, 15));
    t = b.release(25, true);
    assert.ok(t && a.accept(t, 30));
    assert.equal(a.state.tick, 1);
    assert.equal(a.state.lapMs, undefined, "no lap yet: the token was created here");
    t = a.release(40, false);
    assert.ok(t && b.accept(t, 45));
    t = b.release(55, true);
    assert.ok(t && a.accept(t, 60));
    assert.equal(a.state.lapMs, 30);
    assert.equal(a.state.hopTransitMs, 5, "lap 30 ms = 20 ms held + 2 hops of 5 ms");
    assert.equal(a.state.tick, 2);
    // One slow lap (a 50 ms hop: a busy moment) moves the reported transit by one rank only: it is the median
    // of recent laps (5, 27.5, 5, 5), where a mean of them would carry it for many laps.
    for (const [release, arrive] of [
      [70, 120],
      [145, 150],
      [175, 180],
    ] as const) {
      t = a.release(release, false);
      assert.ok(t && b.accept(t, arrive));
      t = b.release(arrive + 10, true);
      assert.ok(t && a.accept(t, arrive + 15));
    }
    assert.equal(a.state.hopTransitMs, 5);
    // The driver stamps the hand-over when it sends: the time before that counts as holding, not transit.
    const released = a.release(205, false); // held since 195
    assert.ok(released);
    const held = released.held;
    stampHandOver(released, "a", 207);
    assert.deepEqual(released.last, { id: "a", sent: 207 });
    assert.equal(released.held, held + 2);
    stampHandOver(released, "b", 209); // only the sender's own hand-over moves
    assert.deepEqual(released.last, { id: "a", sent: 207 });
    assert.ok(b.accept(released, 210));
    assert.equal(b.state.lastHopMs, 3);
    const stale = new TokenKeeper("c", 0);
    const old = stale.create(0);
    assert.equal(a.accept({ ...old, epoch: 0 }, 70), false);
  });
});

void describe("recent samples", () => {
  void it("reports the median of the last samples", () => {
    const r = new RecentSamples(4);
    assert.equal(r.median(), undefined);
    for (const v of [100, 1, 2]) r.add(v);
    assert.equal(r.median(), 2);
    for (const v of [3, 4, 5]) r.add(v); // 100, 1 and 2 are out of the window
    assert.equal(r.median(), 3.5);
  });
});

void describe("messages", () => {
  void it("accepts well-formed messages and refuses wrong shapes", () => {
    const ok: Message = { t: "ping", from: "a", fa: "h:1", seq: 1, cs: 5 };
    assert.deepEqual(parseMessage(ok), ok);
    const bad: unknown[] = [
      null,
      [],
      "ping",
      { ...ok, t: "nope" },
      { ...ok, seq: -1 },
      { ...ok, from: "" },
      { ...ok, upd: [{ id: "x", a: "h:1", i: 0, s: 9 }] },
      { t: "sync", from: "a", fa: "h:1", reply: true, members: "all", bids: [] },
      {
        t: "token",
        from: "a",
        fa: "h:1",
        epoch: 1,
        origin: "a",
        tick: 0,
        hops: 1,
        held: -1,
      },
      { t: "token", from: "a", fa: "h:1", epoch: 1, origin: "a", tick: 0, hops: 1.5, held: 0 },
      { t: "token", from: "a", fa: "h:1", epoch: 1, origin: "a", tick: 0, hops: 1, held: 0, last: { id: 7 } },
      { t: "join", from: "a", fa: "h:1", me: { id: "a", a: "h:1", i: 0, s: 0, m: { __proto__: "x", k: 1 } } },
    ];
    for (const b of bad) assert.equal(parseMessage(b), undefined, JSON.stringify(b));
  });
});

/** Three cores wired together by hand, on a virtual clock: the whole protocol without a simulator. */
function trio(): {
  cores: Map<string, RingCore>;
  run: (until: number) => void;
  events: Array<[string, RingEvent]>;
  down: Set<string>;
} {
  const random = seededRandom(3);
  const cores = new Map<string, RingCore>();
  const events: Array<[string, RingEvent]> = [];
  const down = new Set<string>();
  const queue: Array<{ at: number; to: string; msg: Message }> = [];
  for (const id of ["a", "b", "c"]) {
    const core = new RingCore(
      { id, addr: id, periodMs: 100, probeTimeoutMs: 40, seeds: ["a"], tokenHoldMs: 10 },
      0,
      random,
    );
    core.onEvent((e) => events.push([id, e]));
    cores.set(id, core);
  }
  let now = 0;
  const run = (until: number): void => {
    while (now < until) {
      now += 1;
      for (const [id, core] of cores) if (!down.has(id)) core.advance(now);
      for (let i = queue.length - 1; i >= 0; i--) {
        const q = queue[i];
        if (q && q.at <= now) {
          queue.splice(i, 1);
          if (!down.has(q.to)) cores.get(q.to)?.receive(q.msg, now);
        }
      }
      for (const [id, core] of cores) {
        for (const out of core.drain())
          if (!down.has(id)) queue.push({ at: now + 1, to: out.to, msg: out.msg });
      }
    }
  };
  return { cores, run, events, down };
}

void describe("ring core", () => {
  void it("a member whose every peer fails at once (alive in its view, unreachable) keeps the token itself instead of passing it back and forth", () => {
    const { cores, run } = trio();
    run(1000);
    const a = cores.get("a")!;
    let start = 1000;
    while (!a.tokenView().holding) run(++start);
    assert.equal(a.members().filter((m) => m.status === "alive").length, 3);
    // From the moment a holds the token, every send of a fails at once, as the transport reports a refused
    // peer: within the same call, before anything else runs (RingMember.pump does the same, recursively).
    let failures = 0;
    for (let now = start + 1; now < 3000; now++) {
      a.advance(now);
      for (let outs = a.drain(); outs.length > 0; outs = a.drain()) {
        for (const out of outs) {
          failures++;
          assert.ok(failures < 10_000, "sends failing at once must not feed each other without end");
          a.sendFailed(out, now);
        }
      }
    }
    const ticks = a.tokenView().tick;
    for (let now = 3000; now < 4000; now++) {
      a.advance(now);
      for (const out of a.drain()) a.sendFailed(out, now);
    }
    assert.ok(a.tokenView().tick > ticks, "the token laps on a alone");
  });

  void it("joins through a seed, detects a crash, and takes a restarted member back", () => {
    const { cores, run, events, down } = trio();
    run(1000);
    for (const core of cores.values()) {
      assert.equal(core.members().filter((m) => m.status === "alive").length, 3, `${core.id} sees all three`);
    }
    const sums = new Set([...cores.values()].map((c) => c.checksum));
    assert.equal(sums.size, 1, "views agree");
    down.add("c");
    run(6000);
    assert.equal(cores.get("a")?.status("c")?.status, "dead");
    assert.equal(cores.get("b")?.status("c")?.status, "dead");
    assert.ok(
      events.some(([, e]) => e.type === "member" && e.member.id === "c" && e.member.status === "suspect"),
    );
    const ticks = cores.get("a")?.tokenView().tick ?? 0;
    run(7000);
    assert.ok((cores.get("a")?.tokenView().tick ?? 0) > ticks, "the token keeps ticking without c");
    // c restarts: a fresh core with the same id, incarnation 0, lower than the one others hold dead.
    down.delete("c");
    const fresh = new RingCore(
      { id: "c", addr: "c", periodMs: 100, probeTimeoutMs: 40, seeds: ["a"], tokenHoldMs: 10 },
      7000,
      seededRandom(9),
    );
    fresh.onEvent((e) => events.push(["c", e]));
    cores.set("c", fresh);
    run(9000);
    assert.equal(cores.get("a")?.status("c")?.status, "alive", "c refuted its old death and rejoined");
    assert.ok((cores.get("a")?.status("c")?.incarnation ?? 0) > 0);
    const id = cores.get("b")?.broadcast({ set: "x" }, 9000);
    run(9100);
    const delivered = events
      .filter(([, e]) => e.type === "delivered" && e.broadcast.seq === id?.seq)
      .map(([o]) => o);
    assert.deepEqual(delivered.sort(), ["a", "c"]);
    cores.get("a")?.leave(9100);
    run(9300);
    assert.equal(cores.get("b")?.status("a")?.status, "left");
    assert.deepEqual(cores.get("b")?.owners("k", 3).sort(), ["b", "c"]);
  });
});
