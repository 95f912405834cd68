import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { Redis } from "ioredis";
import type { QueueSettings } from "../../src/cluster/types.js";
import { openQueue, type OpenQueueOptions } from "../../src/queue/open.js";
import type { ReplicationQueue } from "../../src/queue/types.js";
import { startRedisServers, type RedisServer } from "../helpers/redis.js";
import { queueSuite } from "./queue-suite.js";
import { sampleTask } from "./sample-task.js";

// One set of servers for the file; every test uses its own queue key.
const servers: RedisServer[] = await startRedisServers({ after }, 3);

function settings(count: number): QueueSettings {
  return {
    key: `q-${randomBytes(4).toString("hex")}`,
    servers: servers.slice(0, count).map((s) => s.endpoint),
  };
}

async function open(
  t: { after: (fn: () => Promise<void>) => void },
  s: QueueSettings,
  options: OpenQueueOptions = {},
): Promise<ReplicationQueue> {
  const q = await openQueue({ settings: s }, { commandTimeoutMs: 500, ...options });
  t.after(() => q.stop());
  return q;
}

queueSuite("redis (2 servers)", (t, options) => open(t, settings(2), options));
queueSuite("redis (3 servers, 2 copies each)", (t, options) => open(t, settings(3), options));

void test("redis: every task is stored on two of three servers", async (t) => {
  const s = settings(3);
  const q = await open(t, s);
  await q.push(Array.from({ length: 60 }, (_, i) => sampleTask(i)));
  const counts = await Promise.all(
    servers.map(async (srv) => {
      const c = new Redis({ host: srv.host, port: srv.port, lazyConnect: true });
      await c.connect();
      try {
        return await c.hlen(`${s.key}:tasks`);
      } finally {
        c.disconnect();
      }
    }),
  );
  assert.equal(
    counts.reduce((a, b) => a + b, 0),
    120,
  );
  assert.ok(
    counts.every((c) => c > 0 && c < 60),
    `spread: ${counts.join(",")}`,
  );
});

void test("redis: a payload that is not JSON is leased as malformed and dead-lettered with its reason", async (t) => {
  const s = settings(1);
  const q = await open(t, s);
  const srv = servers[0];
  assert.ok(srv);
  const c = new Redis({ host: srv.host, port: srv.port });
  t.after(() => c.disconnect());
  await c.hset(`${s.key}:tasks`, "junk-1", "{not json");
  await c.zadd(`${s.key}:due`, 0, "junk-1");
  await q.push([sampleTask(1)]);
  const leased = await q.lease(10, 30_000, 1000);
  assert.equal(leased.length, 2);
  const junk = leased.find((l) => l.id === "junk-1");
  assert.equal(junk?.task, undefined);
  await q.fail("junk-1", "payload is not JSON", { fatal: true });
  const dead = await q.deadLetters();
  assert.deepEqual(
    dead.map((d) => [d.id, d.raw, d.reason]),
    [["junk-1", "{not json", "payload is not JSON"]],
  );
});

void test("redis: with every server down a push fails fast with UNAVAILABLE", async (t) => {
  const q = await open(t, { key: "down", servers: [{ host: "127.0.0.1", port: 1 }] });
  const started = Date.now();
  await assert.rejects(q.push([sampleTask(1)]), { code: "UNAVAILABLE" });
  assert.deepEqual(await q.lease(1, 1000, 0), []);
  assert.ok(Date.now() - started < 5000);
});
