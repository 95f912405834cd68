import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { crc32 } from "node:zlib";
import { createAgent } from "../../src/client/http-agent.js";
import { NodeClient } from "../../src/client/node-client.js";
import { etagOf } from "../../src/common/checksum.js";
import { startNode } from "./node-harness.js";

void test("NodeClient speaks the node's wire contract: put, head, get, delete, checksums, token", async (t) => {
  const node = await startNode(t, { writeToken: "tok" });
  const agent = createAgent();
  t.after(() => agent.close());
  const client = new NodeClient(agent, { token: "tok" });
  const body = randomBytes(70_000);
  const key = "dir/with space/é.bin";

  const { crc } = await client.put(node.url, key, body, { size: body.length, contentType: "x/y" });
  assert.equal(crc, crc32(body));
  const meta = await client.head(node.url, key);
  assert.deepEqual(
    { size: meta?.size, crc: meta?.crc, contentType: meta?.contentType, etag: meta?.etag },
    { size: body.length, crc, contentType: "x/y", etag: etagOf(crc, body.length) },
  );
  const res = await client.get(node.url, key);
  assert.equal(res.statusCode, 200);
  assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), body);

  // A streamed body with the checksum it must match, and one that does not match.
  async function* chunks(): AsyncGenerator<Buffer> {
    yield body.subarray(0, 1000);
    yield body.subarray(1000);
  }
  assert.equal((await client.put(node.url, "streamed", chunks(), { expectedCrc: crc })).crc, crc);
  await assert.rejects(client.put(node.url, "bad", body, { expectedCrc: (crc ^ 1) >>> 0 }), {
    code: "CHECKSUM_MISMATCH",
  });
  assert.equal(await client.head(node.url, "bad"), undefined);

  await assert.rejects(new NodeClient(agent).put(node.url, "x", Buffer.from("1")), { code: "UNAUTHORIZED" });
  await assert.rejects(client.put(node.url, "../x", Buffer.from("1")), { code: "INVALID_KEY" });

  assert.equal(await client.delete(node.url, key), true);
  assert.equal(await client.delete(node.url, key), false);
  assert.equal(await client.head(node.url, key), undefined);
});
