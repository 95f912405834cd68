import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { WebSocket } from "undici";
import { checksum, formatChecksum } from "../../src/common/checksum.js";
import { openClusterMap } from "../../src/cluster/open.js";
import type { ChildHandle } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { ProcCluster } from "./proc-cluster.js";

/** The coordinator process's memory, from its Prometheus metrics: resident, and in use (JS heap and Buffers). */
async function memoryOf(url: string): Promise<{ rss: number; live: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const metric = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
    if (!m) throw new Error(`no ${name} in /metrics`);
    return Number(m[1]);
  };
  return {
    rss: metric("process_resident_memory_bytes"),
    live: metric("nodejs_heap_size_used_bytes") + metric("nodejs_external_memory_bytes"),
  };
}

/**
 * Runs a full garbage collection in a process started with `--inspect` (through its inspector), so that its
 * memory figures show what is still in use rather than garbage an idle process has no reason to collect yet.
 */
async function collectGarbage(child: ChildHandle): Promise<void> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(child.stderr)?.[1];
  if (url === undefined) throw new Error("the process has no inspector");
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () =>
      ws.send(JSON.stringify({ id: 1, method: "HeapProfiler.collectGarbage" })),
    );
    ws.addEventListener("message", (e) => {
      if ((JSON.parse(String(e.data)) as { id?: number }).id === 1) resolve();
    });
    ws.addEventListener("error", () => reject(new Error("inspector connection failed")));
  });
  ws.close();
}

/** A chunked upload that sends `bytes` at once in 64 KiB frames, then stalls; resolves with its answer's status. */
function stalledChunked(url: string, key: string, bytes: number): Promise<number> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(u.port), u.hostname);
    let text = "";
    socket.setEncoding("latin1").on("data", (d: string) => (text += d));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.write(`PUT /${key} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`);
    const frame = Buffer.concat([Buffer.from("10000\r\n"), Buffer.alloc(0x10000, 7), Buffer.from("\r\n")]);
    for (let sent = 0; sent < bytes; sent += 0x10000) socket.write(frame);
  });
}

/** Two node processes in shard 1 on an embedded map, with an embedded queue. */
async function twoNodes(t: Parameters<typeof ProcCluster.create>[0]): Promise<ProcCluster> {
  const c = await ProcCluster.create(t);
  await Promise.all(["1", "2"].map((id) => c.startNode(id)));
  const map = openClusterMap({ file: c.zk.slice("file:".length) });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: `file:${join(c.dir, "queue")}`, servers: [] });
  for (const id of ["1", "2"]) await map.addServer(id, c.nodeUrls.get(id) as string);
  await map.addShard("1", ["1", "2"], 1024 ** 4);
  await map.setShardEnabled("1", true);
  return c;
}

void test("60 stalled chunked uploads: cut with 408; the coordinator's memory stays bounded and comes back", async (t) => {
  const c = await twoNodes(t);
  const tmp = await tempDir(t, "backpack-spool-");
  const coordinator = await c.track({
    command: "backpack-coordinator",
    args: [
      c.zk,
      c.root,
      "127.0.0.1",
      "0",
      "--body-timeout",
      "1s",
      "--max-buffered",
      "64mb",
      "--tmp-dir",
      tmp,
    ],
    nodeArgs: ["--inspect=127.0.0.1:0"],
  });

  // Warm up (code paths, connection pools), then the baseline.
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${coordinator.url}/warm-${i}`, {
      method: "PUT",
      body: Buffer.alloc(64 * 1024, i),
    });
    assert.equal(res.status, 200);
  }
  await collectGarbage(coordinator);
  const before = await memoryOf(coordinator.url);

  // 60 uploads send 4 MiB each (240 MiB in all) and stall.
  const statuses = Array.from({ length: 60 }, (_, i) =>
    stalledChunked(coordinator.url, `stalled-${i}`, 4 << 20),
  );
  let peakBuffered = 0;
  let peakRss = before.rss;
  let done = false;
  const answered = Promise.all(statuses).finally(() => (done = true));
  while (!done) {
    const s = (await (await fetch(`${coordinator.url}/stats`)).json()) as { buffered_upload_bytes: number };
    peakBuffered = Math.max(peakBuffered, s.buffered_upload_bytes);
    peakRss = Math.max(peakRss, (await memoryOf(coordinator.url)).rss);
  }
  assert.deepEqual(new Set(await answered), new Set([408]), "every stalled upload is cut with 408");
  assert.ok(
    peakBuffered <= 64 * 1024 ** 2,
    `bodies held in memory stay within --max-buffered: ${peakBuffered}`,
  );

  // Once they are cut, what the coordinator uses is back within 10% of the baseline.
  await collectGarbage(coordinator);
  const after = await memoryOf(coordinator.url);
  t.diagnostic(
    `coordinator memory, MiB: in use ${mib(before.live)} before, ${mib(after.live)} after; ` +
      `resident ${mib(before.rss)} before, ${mib(peakRss)} at most during, ${mib(after.rss)} after`,
  );
  assert.ok(after.live <= before.live * 1.1, `in use ${mib(after.live)} MiB, was ${mib(before.live)} MiB`);
  assert.deepEqual(await readdir(tmp), [], "spooled bodies are removed");
});

void test("50 MiB uploads, two at once, stream through to both nodes: the coordinator's memory stays bounded", async (t) => {
  const c = await twoNodes(t);
  const coordinator = await c.track({
    command: "backpack-coordinator",
    args: [c.zk, c.root, "127.0.0.1", "0"],
    nodeArgs: ["--inspect=127.0.0.1:0"],
  });
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`${coordinator.url}/warm-${i}`, {
      method: "PUT",
      body: Buffer.alloc(1 << 20, i),
    });
    assert.equal(res.status, 200);
  }
  await collectGarbage(coordinator);
  const before = await memoryOf(coordinator.url);
  const size = 50 * 1024 * 1024;
  const bodies = [1, 2, 3, 4].map((i) => {
    const b = Buffer.alloc(size);
    for (let o = 0; o < size; o += 4096) b[o] = (o / 4096 + i) & 0xff;
    return b;
  });
  let done = false;
  let peakRss = before.rss;
  // Two at a time (a pair, then the next): the coordinator holds two streams at once throughout.
  const put = async (i: number): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${coordinator.url}/huge-${i}.bin`, { method: "PUT", body: bodies[i] });
    return { status: res.status, text: await res.text() };
  };
  const uploads = (async () => [
    ...(await Promise.all([put(0), put(1)])),
    ...(await Promise.all([put(2), put(3)])),
  ])().finally(() => (done = true));
  uploads.catch(() => undefined); // awaited after the sampling below, which reports a failure

  while (!done) peakRss = Math.max(peakRss, (await memoryOf(coordinator.url)).rss);
  for (const r of await uploads) assert.equal(r.status, 200, r.text);
  // Streamed through once (past --retain), each body is held only as the slowest node lags behind (about a
  // MiB): 200 MiB went through; the resident memory grew by far less than one body.
  t.diagnostic(`coordinator resident memory, MiB: ${mib(before.rss)} before, ${mib(peakRss)} at most during`);
  assert.ok(peakRss - before.rss < 48 * 1024 ** 2, `grew by ${mib(peakRss - before.rss)} MiB`);
  for (const [i, body] of bodies.entries()) {
    const crc = formatChecksum(checksum(body));
    for (const id of ["1", "2"]) {
      const head = await fetch(`${c.nodeUrls.get(id)}/huge-${i}.bin`, { method: "HEAD" });
      assert.equal(head.headers.get("x-backpack-checksum"), crc, `huge-${i}.bin on node ${id}`);
    }
  }
});

function mib(bytes: number): string {
  return (bytes / 1024 ** 2).toFixed(1);
}
