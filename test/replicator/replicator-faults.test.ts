import assert from "node:assert/strict";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { BATCH_PATH, decodeBatch } from "../../src/common/batch-frame.js";
import { request } from "undici";
import { silentLogger } from "../../src/common/logger.js";
import type { ClusterMap } from "../../src/cluster/types.js";
import { openQueue } from "../../src/queue/open.js";
import type { ReplicationQueue } from "../../src/queue/types.js";
import { replicatorConfig } from "../../src/replicator/config.js";
import { ReplicatorService } from "../../src/replicator/service.js";
import { startProcess } from "../helpers/process.js";
import { startRedis } from "../helpers/redis.js";
import { capturingLogger } from "../storage/helpers.js";
import { waitFor } from "../helpers/wait.js";
import { clusterMap, copyTask, crcOn, nodeStats, put, randomBody, startNodes } from "./fixture.js";

async function json<T>(url: string): Promise<T> {
  const res = await request(url);
  return (await res.body.json()) as T;
}

/** Stores `count` files on `url` and returns copy tasks for them to `target`. */
async function seed(url: string, count: number, size: number, target: string) {
  const tasks = [];
  for (let i = 0; i < count; i += 16) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(16, count - i) }, async (_, j) => {
        const key = `f/${i + j}.bin`;
        const body = randomBody(size);
        const crc = await put(url, key, body);
        return copyTask(key, crc, size, ["1"], target);
      }),
    );
    tasks.push(...batch);
  }
  return tasks;
}

void test("a replicator SIGKILLed mid-copy: its tasks complete later, each exactly once", async (t) => {
  const redis = await startRedis(t);
  const [n1, n2] = await startNodes(t, 2);
  assert.ok(n1 && n2);
  const settings = { key: "kill-test", servers: [redis.endpoint] };
  const { file } = await clusterMap(t, [n1, n2], { "1": ["1", "2"] }, settings);
  const queue = await openQueue({ settings });
  t.after(() => queue.stop());
  const tasks = await seed(n1.url, 1200, 32 * 1024, "2");
  await queue.push(tasks);

  const args = [`file:${file}`, "/", "8", "--lease", "5s", "--per-target", "8", "--batch", "8"];
  const first = await startProcess(t, { command: "backpack-replicator", args });
  await waitFor(async () => (await json<{ copies: number }>(`${first.url}/stats`)).copies >= 100, {
    what: "copies under way",
  });
  await first.kill("SIGKILL");
  const leftAfterKill = (await queue.stats()).depth;
  assert.ok(leftAfterKill > 0, "the kill came before the end");

  const second = await startProcess(t, { command: "backpack", args: ["replicator", ...args] });
  await waitFor(async () => (await queue.stats()).depth === 0, { timeoutMs: 60_000, what: "queue drained" });
  for (const task of tasks) assert.equal(await crcOn(n2.url, task.key), task.crc, task.key);
  // Exactly once: the target stored each file one time (a task whose copy landed before the kill but whose
  // ack did not is found on the target by the next replicator and skipped).
  assert.equal((await nodeStats(n2.url)).puts.count, tasks.length);
  assert.equal((await queue.stats()).deadLetters, 0);
  assert.equal(await second.kill("SIGTERM"), 0);
});

/** Replicator figures the tests below look at. */
type Stats = {
  heldBack: number;
  unreachable: number;
  targetsDown: string[];
  copies: number;
  deadLetters: number;
};

/**
 * A replicator whose targets are paused 20-50 ms after a failure, over a queue that dead-letters a task after
 * 2 attempts: a task waiting for its target comes back many times a second, so a few seconds here are what
 * hours of a node being away are with the default pauses (up to 30 s). What matters is that no attempt is
 * spent on waiting, however long it lasts.
 */
async function impatientReplicator(
  t: { after: (fn: () => Promise<unknown>) => void },
  key: string,
  servers = 2,
) {
  const redis = await startRedis(t);
  const nodes = await startNodes(t, servers);
  const settings = { key, servers: [redis.endpoint] };
  const queue = await openQueue({ settings }, { maxAttempts: 2, backoffBaseMs: 20, backoffMaxMs: 50 });
  t.after(() => queue.stop());
  return { nodes, settings, queue };
}

async function startReplicator(
  t: { after: (fn: () => Promise<unknown>) => void },
  deps: { map: ClusterMap; queue: ReplicationQueue },
) {
  const replicator = new ReplicatorService(
    replicatorConfig({ concurrency: 16, leaseMs: 5000, targetDownMinMs: 20, targetDownMaxMs: 50 }),
    { ...deps, log: silentLogger },
  );
  await replicator.start();
  t.after(() => replicator.stop());
  return replicator;
}

void test("a target node down far longer than its tasks have attempts: no attempt spent, every copy lands once it is back", async (t) => {
  const { nodes, settings, queue } = await impatientReplicator(t, "down-test");
  const [n1, n2] = nodes;
  assert.ok(n1 && n2);
  const { map } = await clusterMap(t, [n1, n2], { "1": ["1", "2"] }, settings);
  const replicator = await startReplicator(t, { map, queue });

  const tasks = await seed(n1.url, 50, 4096, "2");
  await n2.child.kill("SIGKILL");
  await queue.push(tasks);
  // Each task waits for its target more than ten times as often as it could fail before being given up on.
  await waitFor(
    async () => (await json<Stats>(`${replicator.url}/stats`)).heldBack >= tasks.length * 2 * 10,
    {
      timeoutMs: 30_000,
      what: "every task held back many times over",
    },
  );
  await waitFor(async () => (await queue.stats()).unreachable > 0, { what: "tasks counted as unreachable" });
  const s = await json<Stats>(`${replicator.url}/stats`);
  assert.equal(s.copies, 0);
  assert.equal(s.deadLetters, 0, "nothing given up on while the target is down");
  assert.ok(s.targetsDown.includes("2"));
  const q = await queue.stats();
  assert.equal(q.depth, tasks.length, "queue depth counts the waiting copies");
  assert.ok(q.oldestAgeMs > 0, "and the lag shows they wait");

  await n2.child.start();
  await waitFor(async () => (await queue.stats()).depth === 0, { timeoutMs: 30_000, what: "queue drained" });
  for (const task of tasks) assert.equal(await crcOn(n2.url, task.key), task.crc);
  assert.equal((await queue.stats()).deadLetters, 0);
  assert.equal((await queue.stats()).unreachable, 0);
});

void test("a target node seen back: the copies waiting for it go at once, not at the end of their backoff, with one log line", async (t) => {
  const redis = await startRedis(t);
  const [n1, n2] = await startNodes(t, 2);
  assert.ok(n1 && n2);
  const settings = { key: "back-test", servers: [redis.endpoint] };
  const queue = await openQueue({ settings });
  t.after(() => queue.stop());
  const { map } = await clusterMap(t, [n1, n2], { "1": ["1", "2"] }, settings);
  // Paused for 10 minutes after the first failure: a copy that waited out its backoff would come far too late.
  const { log, lines } = capturingLogger();
  const replicator = new ReplicatorService(
    replicatorConfig({ leaseMs: 5000, targetDownMinMs: 600_000, targetDownMaxMs: 600_000 }),
    { map, queue, log },
  );
  await replicator.start();
  t.after(() => replicator.stop());

  const tasks = await seed(n1.url, 30, 4096, "2");
  await n2.child.kill("SIGKILL");
  assert.equal(n2.child.running, false, "node 2 is down");
  await queue.push(tasks);
  await waitFor(async () => (await queue.stats()).unreachable === tasks.length, {
    timeoutMs: 30_000,
    what: "every copy waiting for node 2",
  });
  assert.deepEqual((await json<Stats>(`${replicator.url}/stats`)).targetsDown, ["2"]);
  const back = (): Record<string, unknown>[] =>
    lines.filter((l) => l.msg === "target reachable again; its waiting copies go now");
  assert.equal(back().length, 0);

  await n2.child.start();
  await waitFor(async () => (await queue.stats()).depth === 0, {
    timeoutMs: 120_000,
    what: "the copies to node 2 done (their backoff runs 10 minutes)",
  });
  for (const task of tasks) assert.equal(await crcOn(n2.url, task.key), task.crc, task.key);
  assert.equal(back().length, 1, "one line says node 2 is back");
  assert.equal(back()[0]?.target, "2");
  assert.equal(back()[0]?.waiting, tasks.length);
  assert.deepEqual((await json<Stats>(`${replicator.url}/stats`)).targetsDown, []);
});

void test("a target whose disk is full (507 NO_SPACE): its copies wait without spending attempts and land once it has room", async (t) => {
  const { nodes, settings, queue } = await impatientReplicator(t, "full-test");
  const [n1, n2] = nodes;
  assert.ok(n1 && n2);
  const full = await fullDiskFront(t, n2.url);
  const { map } = await clusterMap(t, [n1, { ...n2, url: full.url }], { "1": ["1", "2"] }, settings);
  const replicator = await startReplicator(t, { map, queue });

  const tasks = await seed(n1.url, 40, 4096, "2");
  await queue.push(tasks);
  await waitFor(
    async () => (await json<Stats>(`${replicator.url}/stats`)).heldBack >= tasks.length * 2 * 10,
    {
      timeoutMs: 30_000,
      what: "every task held back many times over",
    },
  );
  assert.ok(full.refused > 0, "the target refused copies with 507");
  const s = await json<Stats>(`${replicator.url}/stats`);
  assert.equal(s.deadLetters, 0, "nothing given up on while the disk is full");
  assert.equal((await queue.stats()).depth, tasks.length);

  full.full = false;
  await waitFor(async () => (await queue.stats()).depth === 0, { timeoutMs: 30_000, what: "queue drained" });
  for (const task of tasks) assert.equal(await crcOn(n2.url, task.key), task.crc);
  assert.equal((await queue.stats()).deadLetters, 0);
});

/**
 * A front for a real node that answers every write with 507 NO_SPACE while `full` (as a node with a full disk
 * does: a PUT with 507, every record of a batch with 507) and passes everything else, and everything once
 * `full` is false, to the node.
 */
async function fullDiskFront(t: { after: (fn: () => Promise<unknown>) => void }, nodeUrl: string) {
  const state = { full: true, refused: 0, url: "" };
  const server = createServer((req, res) => {
    if (state.full && (req.method === "PUT" || req.url === BATCH_PATH)) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        state.refused++;
        const refusal = { status: 507, error: "no space left on the device", code: "NO_SPACE" };
        const batch = req.method === "POST";
        const body = JSON.stringify(
          batch
            ? { results: decodeBatch(Buffer.concat(chunks), { maxBodyBytes: 1 << 30 }).map(() => refusal) }
            : refusal,
        );
        res.writeHead(batch ? 200 : 507, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        });
        res.end(body);
      });
      return;
    }
    const upstream = httpRequest(
      `${nodeUrl}${req.url ?? "/"}`,
      { method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  });
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}
