import assert from "node:assert/strict";
import { test } from "node:test";
import { keyFromTarget, keyToPath, parseShardKey, shardKeyFromTarget } from "../../src/common/key.js";
import { startFixture } from "./fixture.js";

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
};

void test("shardKeyFromTarget: a key of up to 1024 bytes is read whatever the length of its shard id", () => {
  for (const length of [1, 1022, 1023, 1024]) {
    const key = "k".repeat(length);
    for (const shardId of ["1", "12345"]) {
      assert.deepEqual(shardKeyFromTarget(`/${shardId}:${key}?x=1`), { shardId, key });
      // What the client sends (coordinator-client.ts): the id and the key path-encoded around a raw ':'.
      assert.deepEqual(shardKeyFromTarget(`/${shardId}:${keyToPath(key).slice(1)}`), { shardId, key });
    }
    // The old way refused the 1023- and 1024-byte keys: "1:" pushed them past 1024 bytes.
    assert.equal(
      code(() => parseShardKey(keyFromTarget(`/1:${key}`))),
      length > 1022 ? "INVALID_KEY" : undefined,
    );
  }
  const multiByte = "é".repeat(512); // 1024 bytes of UTF-8
  assert.deepEqual(shardKeyFromTarget(`/2:${keyToPath(multiByte).slice(1)}`), {
    shardId: "2",
    key: multiByte,
  });
  assert.deepEqual(
    shardKeyFromTarget("/1%3Akey"),
    { shardId: "1", key: "key" },
    "an encoded ':' splits as before",
  );
  for (const bad of [`/1:${"k".repeat(1025)}`, "/1:", "/:key", "/nocolon", "/1:a/../b", "/1:%zz", "1:key"]) {
    assert.equal(
      code(() => shardKeyFromTarget(bad)),
      "INVALID_KEY",
      bad,
    );
  }
});

void test("a key of 1023-1024 bytes stored through a coordinator can be read and deleted through it", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  for (const length of [1023, 1024]) {
    const key = "k".repeat(length);
    const put = await fetch(`${f.url}/${key}`, { method: "PUT", body: "long" });
    assert.equal(put.status, 200, `PUT of ${length} bytes`);
    const get = await fetch(`${f.url}/1:${key}`);
    assert.equal(get.status, 200, `GET of ${length} bytes`);
    assert.equal(await get.text(), "long");
    assert.equal((await fetch(`${f.url}/1:${key}`, { method: "HEAD" })).status, 200);
    assert.equal((await fetch(`${f.url}/1:${key}`, { method: "DELETE" })).status, 204, `DELETE of ${length}`);
    assert.equal((await fetch(`${f.url}/1:${key}`)).status, 404);
  }
  assert.equal((await fetch(`${f.url}/${"k".repeat(1025)}`, { method: "PUT", body: "x" })).status, 400);
  assert.equal((await fetch(`${f.url}/1:${"k".repeat(1025)}`)).status, 400);
});
