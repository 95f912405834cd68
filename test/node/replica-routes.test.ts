import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { bucketOf } from "../../src/storage/replica-digest.js";
import { tempDir } from "../helpers/tmp.js";
import { http, startNode } from "./node-harness.js";

void test("GET /_backpack/digest and /_backpack/list: what repair compares", async (t) => {
  const node = await startNode(t);
  for (const key of ["a/1", "a/2", "b/3"]) {
    assert.equal((await http(node.url, `/${key}`, { method: "PUT", body: key })).status, 201);
  }
  await http(node.url, "/b/3", { method: "DELETE" });
  const digest = (await http(node.url, "/_backpack/digest")).json() as unknown as {
    buckets: number;
    entries: number;
    digest: string;
  };
  assert.equal(digest.buckets, 4096);
  assert.equal(digest.entries, 3, "two files and a tombstone");
  assert.equal(digest.digest.length, 4096 * 16);
  const bucket = bucketOf(Buffer.from("b/3"));
  assert.notEqual(digest.digest.slice(bucket * 16, bucket * 16 + 16), "0".repeat(16));
  const list = (await http(node.url, `/_backpack/list?bucket=${bucket}`)).json() as unknown as {
    entries: { key: string; version: string; crc: string; size: number; deleted?: boolean }[];
    more: boolean;
  };
  const entry = list.entries.find((e) => e.key === "b/3");
  assert.ok(entry?.deleted);
  assert.match(entry.version, /^\d{16}-[0-9a-f]{4}$/);
  assert.equal((await http(node.url, "/_backpack/list?bucket=5000")).status, 400);
  assert.equal((await http(node.url, "/_backpack/list?bucket=1&limit=0")).status, 400);
  assert.equal((await http(node.url, "/_backpack/nothing")).status, 404);
  assert.equal((await http(node.url, "/_backpack/digest", { method: "PUT", body: "x" })).status, 405);
});

void test("a node whose data was away longer than the grace period refuses repair until it is reset", async (t) => {
  const dataDir = await tempDir(t, "backpack-node-");
  // Last alive 10 days ago.
  await writeFile(join(dataDir, "alive"), `${Date.now() - 10 * 86_400_000}\n`);
  const node = await startNode(t, { dataDir });
  const res = await http(node.url, "/_backpack/digest");
  assert.equal(res.status, 409);
  assert.equal(res.json().code, "AWAY_TOO_LONG");
  assert.match(String(res.json().error), /away for 10d.*longer than the tombstone grace period \(7d\)/);
  await node.stop();
  const restarted = await startNode(t, { dataDir });
  assert.equal(
    (await http(restarted.url, "/_backpack/digest")).status,
    409,
    "a plain restart does not reset it",
  );
  await restarted.stop();
  const rejoined = await startNode(t, { dataDir, rejoin: true });
  assert.equal((await http(rejoined.url, "/_backpack/digest")).status, 200);
  await rejoined.stop();
  const after = await startNode(t, { dataDir });
  assert.equal((await http(after.url, "/_backpack/digest")).status, 200, "rejoined for good");
});
