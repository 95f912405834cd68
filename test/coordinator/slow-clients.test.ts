import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { test, type TestContext } from "node:test";
import { waitFor } from "../helpers/wait.js";
import { nodeUrl, startFixture, type Fixture } from "./fixture.js";

/**
 * Clients that send their uploads too slowly, or stop mid-way, against a coordinator: they are cut with 408
 * REQUEST_TIMEOUT by the coordinator's own body timeout and minimum rate (their fault, no node's), and the
 * uploads of other clients go on.
 */

const GIB = 1024 ** 3;

/** A raw upload whose first bytes are written at once; `status` resolves with the answer's status (0: none). */
function rawUpload(
  f: Fixture,
  head: string,
  first: Buffer | string,
): { socket: Socket; status: Promise<number> } {
  const url = new URL(f.url);
  const socket = connect(Number(url.port), url.hostname);
  let text = "";
  socket.setEncoding("latin1").on("data", (d: string) => (text += d));
  socket.on("error", () => undefined);
  const status = new Promise<number>((resolve) => {
    socket.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
  });
  socket.write(head);
  socket.write(first);
  return { socket, status };
}

/** Sends a byte every `everyMs` until the connection closes: a client far under any minimum rate. */
function trickle(socket: Socket, everyMs: number): void {
  const timer = setInterval(() => {
    if (socket.destroyed) clearInterval(timer);
    else socket.write("x");
  }, everyMs);
  socket.on("close", () => clearInterval(timer));
}

async function suspects(f: Fixture): Promise<string[]> {
  return ((await (await fetch(`${f.url}/stats`)).json()) as { suspect_servers: string[] }).suspect_servers;
}

async function nodesIdle(f: Fixture): Promise<boolean> {
  for (const id of f.nodes.keys()) {
    const s = (await (await fetch(`${nodeUrl(f, id)}/stats`)).json()) as { inflight_uploads: number };
    if (s.inflight_uploads !== 0) return false;
  }
  return true;
}

async function legitimateUploads(f: Fixture, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 6) {
    const batch = Array.from({ length: Math.min(6, count - i) }, async (_, j) => {
      const body = Buffer.alloc(1000 + (i + j) * 4096, i + j);
      const res = await fetch(`${f.url}/legit-${i + j}`, { method: "PUT", body });
      await res.arrayBuffer();
      return res.status;
    });
    statuses.push(...(await Promise.all(batch)));
  }
  return statuses;
}

function fixture(t: TestContext, bodyTimeoutMs: number): Promise<Fixture> {
  // Shards large enough that what slow uploads declare (1 GiB each) never fills them.
  return startFixture(t, {
    shards: { "1": ["1", "4"], "2": ["2", "5"], "3": ["3", "6"] },
    capacity: 1024 * GIB,
    config: { bodyTimeoutMs, minBodyRate: 1024 },
  });
}

void test("a client that stalls mid-upload gets 408 REQUEST_TIMEOUT from the coordinator; nothing stored, no node blamed", async (t) => {
  const f = await fixture(t, 500);
  const started = Date.now();
  const uploads = [
    ["small", 100, Buffer.alloc(10, 1)],
    ["kept", 4 << 20, Buffer.alloc(2 << 20, 2)],
    ["streamed", 32 << 20, Buffer.alloc(3 << 20, 3)],
  ] as const;
  const answers = uploads.map(([name, length, sent]) =>
    rawUpload(f, `PUT /stall-${name} HTTP/1.1\r\nhost: x\r\ncontent-length: ${length}\r\n\r\n`, sent),
  );
  const statuses = await Promise.all(answers.map((a) => a.status));
  assert.deepEqual(statuses, [408, 408, 408]);
  assert.ok(Date.now() - started < 15_000, "cut by the coordinator's body timeout, not after a minute");
  for (const [name] of uploads) assert.equal((await fetch(`${f.url}/1:stall-${name}`)).status, 404);
  assert.deepEqual(await suspects(f), [], "a slow client is not a node failure");
  await waitFor(() => nodesIdle(f), { what: "no upload left in flight on the nodes" });
  assert.deepEqual(await legitimateUploads(f, 6), [200, 200, 200, 200, 200, 200]);
});

void test("24 uploads declaring 1 GiB and trickling a byte at a time are cut by the minimum rate; the other uploads go on", async (t) => {
  const f = await fixture(t, 500);
  const slow = Array.from({ length: 24 }, (_, i) =>
    rawUpload(f, `PUT /slow-${i} HTTP/1.1\r\nhost: x\r\ncontent-length: ${GIB}\r\n\r\n`, "x"),
  );
  for (const s of slow) trickle(s.socket, 100); // 10 bytes/s, under 1 KiB/s
  const statuses = await Promise.all(slow.map((s) => s.status));
  // Cut with 408 by the coordinator; an upload sent while both nodes of its shard were busy with slow ones may
  // have been refused 503 at once.
  assert.ok(
    statuses.every((s) => s === 408 || s === 503),
    statuses.join(","),
  );
  assert.ok(
    statuses.filter((s) => s === 408).length >= 3,
    "at least the first slow upload of each shard is cut",
  );
  await waitFor(() => nodesIdle(f), { what: "the nodes released every slow upload" });
  assert.deepEqual(await legitimateUploads(f, 30), Array(30).fill(200));
});

void test("legitimate uploads keep succeeding while 24 slow uploads are connected, and no node is marked suspect", async (t) => {
  const f = await fixture(t, 5000);
  const slow = Array.from({ length: 24 }, (_, i) =>
    rawUpload(f, `PUT /slow-${i} HTTP/1.1\r\nhost: x\r\ncontent-length: ${GIB}\r\n\r\n`, "x"),
  );
  for (const s of slow) trickle(s.socket, 1000);
  t.after(() => {
    for (const s of slow) s.socket.destroy();
  });
  await waitFor(
    async () =>
      ((await (await fetch(`${f.url}/stats`)).json()) as { uploads_in_flight: number }).uploads_in_flight >=
      24,
    { what: "the slow uploads in flight" },
  );
  assert.deepEqual(await legitimateUploads(f, 30), Array(30).fill(200));
  assert.deepEqual(await suspects(f), []);
});
