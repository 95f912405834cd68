import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import type { QueueOptions, ReplicationQueue, ReplicationTask } from "../../src/queue/types.js";
import { waitFor } from "../helpers/wait.js";
import { sampleTask } from "./sample-task.js";

export { sampleTask };

/** Opens a fresh, started queue for one test (and stops it after the test). */
export type QueueFactory = (t: TestContext, options: QueueOptions) => Promise<ReplicationQueue>;

/** Leases until `count` tasks were returned in total (a lease may return fewer than asked). */
async function leaseAll(q: ReplicationQueue, count: number, leaseMs = 30_000) {
  const out: Awaited<ReturnType<ReplicationQueue["lease"]>> = [];
  await waitFor(
    async () => {
      out.push(...(await q.lease(count - out.length, leaseMs, 200)));
      return out.length >= count;
    },
    { timeoutMs: 10_000, what: `${count} tasks leased` },
  );
  return out;
}

/** The behaviour every ReplicationQueue implementation shares. */
export function queueSuite(name: string, open: QueueFactory): void {
  void test(`${name}: push a batch, lease, ack`, async (t) => {
    const q = await open(t, {});
    const tasks = Array.from({ length: 25 }, (_, i) => sampleTask(i));
    await q.push(tasks);
    assert.equal((await q.stats()).depth, 25);
    assert.equal((await q.stats()).due, 25, "all due: waiting for a replicator");
    const leased = await leaseAll(q, 25);
    assert.deepEqual(leased.map((l) => l.task?.key).sort(), tasks.map((x) => x.key).sort());
    assert.ok(leased.every((l) => l.attempts === 0 && l.raw.length > 0));
    assert.equal(new Set(leased.map((l) => l.id)).size, 25, "ids are unique");
    assert.equal((await q.stats()).leased, 25);
    assert.equal((await q.stats()).due, 0, "leased tasks are not due");
    assert.deepEqual(await q.lease(10, 30_000, 0), [], "leased tasks are not handed out twice");
    await q.ack(leased.map((l) => l.id));
    const s = await q.stats();
    assert.equal(s.depth, 0);
    assert.equal(s.leased, 0);
    assert.equal(s.oldestAgeMs, 0);
  });

  void test(`${name}: two workers leasing at once never share a task`, async (t) => {
    const q = await open(t, {});
    await q.push(Array.from({ length: 40 }, (_, i) => sampleTask(i)));
    const [a, b] = await Promise.all([q.lease(20, 30_000), q.lease(20, 30_000)]);
    const ids = [...(a ?? []), ...(b ?? [])].map((l) => l.id);
    assert.equal(new Set(ids).size, ids.length);
  });

  void test(`${name}: an expired lease is taken over`, async (t) => {
    const q = await open(t, {});
    await q.push([sampleTask(1)]);
    const [first] = await leaseAll(q, 1, 150);
    assert.ok(first);
    // Not due while the lease runs; due again once it ran out (its holder is presumed dead).
    const [again] = await leaseAll(q, 1, 30_000);
    assert.equal(again?.id, first.id);
    assert.equal(again?.attempts, 1);
    await q.ack([first.id]);
    assert.equal((await q.stats()).depth, 0);
  });

  void test(`${name}: a failed task comes back after its backoff`, async (t) => {
    const q = await open(t, { backoffBaseMs: 100, backoffMaxMs: 200 });
    await q.push([sampleTask(1)]);
    const [l] = await leaseAll(q, 1);
    assert.ok(l);
    await q.fail(l.id, "target down", { retryAfterMs: 300 });
    const failedAt = Date.now();
    assert.deepEqual(await q.lease(1, 30_000, 0), [], "not due during the backoff");
    assert.equal((await q.stats()).due, 0, "a task in its backoff is not counted as due");
    const [back] = await leaseAll(q, 1);
    assert.ok(Date.now() - failedAt >= 250, "came back only after the backoff");
    assert.equal(back?.id, l.id);
    assert.equal(back?.attempts, 1);
    // Default backoff (with jitter) also brings it back.
    await q.fail(l.id, "again");
    const [third] = await leaseAll(q, 1);
    assert.equal(third?.attempts, 2);
  });

  void test(`${name}: dead-lettered after maxAttempts, listed, replayed`, async (t) => {
    const q = await open(t, { maxAttempts: 2, backoffBaseMs: 10, backoffMaxMs: 20 });
    await q.push([sampleTask(1), sampleTask(2)]);
    for (let i = 0; i < 2; i++) {
      const leased = await leaseAll(q, 2);
      for (const l of leased) await q.fail(l.id, `failure ${i}`);
    }
    const s = await q.stats();
    assert.equal(s.depth, 0);
    assert.equal(s.deadLetters, 2);
    const dead = await q.deadLetters();
    assert.equal(dead.length, 2);
    for (const d of dead) {
      assert.equal(d.reason, "failure 1");
      assert.equal(d.attempts, 2);
      assert.ok(d.failedAt > 0);
      assert.match(d.raw, /file-[12]\.bin/);
    }
    assert.equal(await q.replay([dead[0]?.id ?? ""]), 1);
    assert.equal((await q.stats()).deadLetters, 1);
    assert.equal(await q.replay(), 1);
    const s2 = await q.stats();
    assert.equal(s2.depth, 2);
    assert.equal(s2.deadLetters, 0);
    const back = await leaseAll(q, 2);
    assert.ok(
      back.every((l) => l.attempts === 0),
      "a replayed task starts with fresh attempts",
    );
    assert.deepEqual(back.map((l) => l.id).sort(), dead.map((d) => d.id).sort());
  });

  void test(`${name}: waiting for an unreachable target spends no attempt, however often, and is counted`, async (t) => {
    const q = await open(t, { maxAttempts: 2, backoffBaseMs: 10, backoffMaxMs: 20 });
    await q.push([sampleTask(1)]);
    // Ten times the attempts a task has: given back each time for a target that is down (or full).
    for (let i = 0; i < 20; i++) {
      const [l] = await leaseAll(q, 1);
      assert.ok(l);
      assert.equal(l.attempts, 0, "no attempt spent on waiting");
      await q.fail(l.id, "target 2 is down", { unreachable: true, retryAfterMs: 1 });
      const s = await q.stats();
      assert.equal(s.depth, 1);
      assert.equal(s.deadLetters, 0);
      assert.equal(s.unreachable, 1, "counted as waiting for an unreachable node");
    }
    const [l] = await leaseAll(q, 1);
    assert.ok(l);
    assert.equal((await q.stats()).unreachable, 0, "a leased task is not counted as waiting");
    // Real failures still count, and dead-letter the task after maxAttempts.
    await q.fail(l.id, "the source lost every verified copy");
    const [again] = await leaseAll(q, 1);
    assert.equal(again?.attempts, 1);
    assert.equal((await q.stats()).unreachable, 0);
    await q.fail(again.id, "the source lost every verified copy");
    const s = await q.stats();
    assert.equal(s.depth, 0);
    assert.equal(s.deadLetters, 1);
    assert.equal(s.unreachable, 0);
  });

  void test(`${name}: find lists a key's tasks with where each stands; nothing for another key or shard`, async (t) => {
    const q = await open(t, {});
    await q.push([
      sampleTask(1, { target: "b" }),
      sampleTask(1, { target: "c", op: "delete", sources: [] }),
      sampleTask(1, { shard: "2" }),
      sampleTask(2),
      ...Array.from({ length: 300 }, (_, i) => sampleTask(100 + i)),
    ]);
    const found = await q.find("1", "file-1.bin");
    assert.deepEqual(found.map((f) => [f.task.target, f.task.op, f.state]).sort(), [
      ["b", "copy", "due"],
      ["c", "delete", "due"],
    ]);
    assert.deepEqual(await q.find("1", "file-999.bin"), []);
    // Leased: being made now. Given back for an unreachable target: waiting, with when it is due again.
    const leased = await leaseAll(q, 303);
    const mine = leased.filter((l) => l.task?.key === "file-1.bin" && l.task.shard === "1");
    assert.equal(mine.length, 2);
    assert.deepEqual(
      (await q.find("1", "file-1.bin")).map((f) => f.state),
      ["leased", "leased"],
    );
    await q.fail(mine[0]!.id, "target down", { unreachable: true, retryAfterMs: 60_000 });
    const after = await q.find("1", "file-1.bin");
    const waiting = after.find((f) => f.id === mine[0]!.id);
    assert.equal(waiting?.state, "waiting");
    assert.ok(waiting.dueAt > Date.now() + 50_000, "due again after the retry delay");
    assert.equal(after.find((f) => f.id === mine[1]!.id)?.state, "leased");
  });

  void test(`${name}: health reports: the last document per shard, totals added up`, async (t) => {
    const q = await open(t, {});
    assert.deepEqual(await q.health(), []);
    await q.putHealth("1", JSON.stringify({ shard: "1", updatedAt: 1, n: "first" }), {
      copied: 3,
      failed: 1,
    });
    await q.putHealth("1", JSON.stringify({ shard: "1", updatedAt: 2, n: "second" }), {
      copied: 2,
      restored: 1,
    });
    await q.putHealth("2", JSON.stringify({ shard: "2", updatedAt: 3 }), {});
    const byShard = new Map((await q.health()).map((h) => [h.shard, h]));
    assert.equal((JSON.parse(byShard.get("1")!.doc) as { n: string }).n, "second");
    assert.deepEqual(byShard.get("1")!.totals, { copied: 5, failed: 1, restored: 1 });
    assert.deepEqual(byShard.get("2")!.totals, {});
  });

  void test(`${name}: expedite makes waiting tasks due now and leaves leased ones alone`, async (t) => {
    const q = await open(t, {});
    await q.push([sampleTask(1), sampleTask(2), sampleTask(3)]);
    const [a, b, c] = await leaseAll(q, 3);
    assert.ok(a && b && c);
    // Two wait ten minutes for a target that is down; the third is still being copied.
    for (const l of [a, b])
      await q.fail(l.id, "target 2 is down", { unreachable: true, retryAfterMs: 600_000 });
    assert.deepEqual(await q.lease(3, 30_000, 100), [], "nothing due before the target is seen back");
    await q.expedite([a.id, b.id, c.id, "not-a-task"]);
    const back = await leaseAll(q, 2);
    assert.deepEqual(back.map((l) => l.id).sort(), [a.id, b.id].sort());
    assert.ok(
      back.every((l) => l.attempts === 0),
      "waiting cost no attempt",
    );
    assert.deepEqual(await q.lease(3, 30_000, 100), [], "the leased task was not handed out twice");
    await q.ack([a.id, b.id, c.id]);
    await q.expedite([a.id]);
    assert.equal((await q.stats()).depth, 0, "an acknowledged task does not come back");
  });

  void test(`${name}: a malformed payload is leased without a task and dead-lettered at once`, async (t) => {
    const q = await open(t, {});
    const bad = { op: "move", key: "x" } as unknown as ReplicationTask;
    await q.push([bad, sampleTask(1)]);
    const leased = await leaseAll(q, 2);
    const malformed = leased.find((l) => l.task === undefined);
    assert.ok(malformed);
    assert.match(malformed.raw, /move/);
    await q.fail(malformed.id, "malformed: op", { fatal: true });
    const [dead] = await q.deadLetters();
    assert.equal(dead?.id, malformed.id);
    assert.equal(dead?.reason, "malformed: op");
    assert.equal((await q.stats()).depth, 1);
  });

  void test(`${name}: stats report the age of the oldest task`, async (t) => {
    const q = await open(t, {});
    await q.push([sampleTask(1, { createdAt: Date.now() - 5000 }), sampleTask(2)]);
    const s = await q.stats();
    assert.equal(s.depth, 2);
    assert.ok(s.oldestAgeMs >= 5000 && s.oldestAgeMs < 60_000, `oldest ${s.oldestAgeMs}`);
  });

  void test(`${name}: a waiting lease returns as soon as work is pushed`, async (t) => {
    const q = await open(t, {});
    const waiting = q.lease(5, 30_000, 20_000);
    await q.push([sampleTask(1)]);
    const got = await waiting;
    assert.equal(got.length, 1);
  });
}
