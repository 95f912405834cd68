import assert from "node:assert/strict";
import { test } from "node:test";
import { Redis } from "ioredis";
import { openQueue } from "../../src/queue/open.js";
import type { ReplicationQueue } from "../../src/queue/types.js";
import { startRedis, startRedisServers } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";
import { sampleTask } from "./sample-task.js";

/** Leases and acks until `expected` distinct keys were seen; returns how often each key was handed out. */
async function drain(q: ReplicationQueue, expected: number, seen = new Map<string, number>()) {
  await waitFor(
    async () => {
      const leased = await q.lease(200, 5000, 100);
      for (const l of leased) seen.set(l.task?.key ?? l.id, (seen.get(l.task?.key ?? l.id) ?? 0) + 1);
      await q.ack(leased.map((l) => l.id)).catch(() => undefined);
      return seen.size >= expected;
    },
    { timeoutMs: 30_000, what: `${expected} tasks drained` },
  );
  return seen;
}

void test("redis fault: one of two servers killed while pushing and draining loses no task", async (t) => {
  const [a, b] = await startRedisServers(t, 2);
  assert.ok(a && b);
  const settings = { key: "fault-kill", servers: [a.endpoint, b.endpoint] };
  const producer = await openQueue({ settings }, { commandTimeoutMs: 500 });
  const consumer = await openQueue({ settings }, { commandTimeoutMs: 500 });
  t.after(() => producer.stop());
  t.after(() => consumer.stop());

  const total = 3000;
  const seen = new Map<string, number>();
  let pushed = 0;
  const pushing = (async () => {
    for (let batch = 0; batch < total / 50; batch++) {
      await producer.push(Array.from({ length: 50 }, (_, i) => sampleTask(batch * 50 + i)));
      pushed += 50;
    }
  })();
  const draining = drain(consumer, total, seen);
  // Kill one server once work is flowing both ways.
  await waitFor(() => pushed >= 1000 && seen.size >= 200, { what: "traffic before the kill" });
  await a.kill();
  await pushing;
  await draining;
  for (let i = 0; i < total; i++) assert.ok(seen.has(`file-${i}.bin`), `task ${i} was drained`);
  // The survivor holds nothing more once everything is acknowledged.
  await waitFor(async () => (await consumer.stats()).depth === 0, { what: "queue empty" });
});

void test("redis fault: a server restarted with AOF keeps every task", async (t) => {
  const redis = await startRedis(t);
  const settings = { key: "fault-aof", servers: [redis.endpoint] };
  const q = await openQueue({ settings }, { commandTimeoutMs: 500 });
  t.after(() => q.stop());
  // Every write fsync'd before its reply, so the crash below comes after the acks are on disk too (with
  // everysec, a check on the AOF's size could pass on the pushes alone; the queue's own guarantee against a
  // crash inside that second is the second server).
  const admin = new Redis({ host: redis.endpoint.host, port: redis.endpoint.port, lazyConnect: true });
  await admin.connect();
  await admin.config("SET", "appendfsync", "always");
  admin.disconnect();
  await q.push(Array.from({ length: 500 }, (_, i) => sampleTask(i)));
  const leased = await q.lease(100, 60_000);
  await q.ack(leased.map((l) => l.id));
  await redis.restart();
  await waitFor(async () => (await q.stats().catch(() => undefined))?.depth === 400, {
    timeoutMs: 15_000,
    what: "400 tasks after the restart",
  });
  const seen = await drain(q, 400);
  assert.equal(seen.size, 400);
  for (const l of leased) assert.ok(!seen.has(l.task?.key ?? ""), "acknowledged tasks stay gone");
});
