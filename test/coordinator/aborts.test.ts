import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { fromNode, startFixture } from "./fixture.js";
import { waitFor } from "../helpers/wait.js";

/** Sends the headers of a PUT and `sent` of its `size` body bytes, then drops the connection. */
async function abortedPut(base: string, key: string, size: number, sent: number): Promise<void> {
  const { hostname, port } = new URL(base);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.write(`PUT /${key} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${size}\r\n\r\n`);
  if (sent > 0) socket.write(Buffer.alloc(sent, 0x61));
  await new Promise<void>((resolve) => socket.end(resolve));
  socket.destroy();
}

void test("clients aborting at random points: no crash, nothing stored or counted, other uploads unaffected", async (t) => {
  // A small retain bound so that both the in-memory and the stream-through paths are cut.
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { retainBytes: 32 * 1024 } });
  let seed = 42;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const aborts: string[] = [];
  let okBytes = 0;
  let okCount = 0;
  const work: Promise<void>[] = [];
  for (let i = 0; i < 40; i++) {
    const size = 1 + Math.floor(random() * 200_000);
    if (i % 4 === 3) {
      work.push(
        fetch(`${f.url}/ok-${i}`, { method: "PUT", body: Buffer.alloc(size, 0x62) }).then(async (r) => {
          assert.equal(r.status, 200, await r.text());
          okBytes += size;
          okCount++;
        }),
      );
    } else {
      aborts.push(`abort-${i}`);
      work.push(abortedPut(f.url, `abort-${i}`, size, Math.floor(random() * size)));
    }
  }
  await Promise.all(work);
  // Every aborted upload has been seen to fail (a connection closed before the handler saw it counts too late).
  await waitFor(
    async () => {
      const s = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
      return s.failed_uploads === aborts.length ? s : undefined;
    },
    { what: `${aborts.length} failed uploads` },
  );
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
  assert.equal(stats.processed_uploads, okCount);
  assert.equal(stats.processed_bytes, okBytes);
  assert.equal(stats.aborted_uploads, aborts.length);
  await f.usageIs("1", okBytes);
  for (const key of aborts) {
    for (const id of ["1", "2"])
      assert.equal((await fromNode(f, id, key)).status, 404, `${key} on node ${id}`);
    assert.equal((await fetch(`${f.url}/1:${key}`)).status, 404);
  }
  // The successful uploads are on both nodes; nothing was queued.
  for (let i = 3; i < 40; i += 4) {
    for (const id of ["1", "2"])
      assert.equal((await fromNode(f, id, `ok-${i}`)).status, 200, `ok-${i} on ${id}`);
  }
  assert.equal((await f.queue!.stats()).depth, 0);
  assert.equal((await fetch(`${f.url}/healthz`)).status, 200);
});
