import assert from "node:assert/strict";
import { test } from "node:test";
import type { ListEntry } from "../../src/client/coordinator-client.js";
import { listKeys } from "../../src/s3/list-handler.js";
import { homeShard, rankShards } from "../../src/s3/placement.js";

/** A sorted listing of `names` in pages of `pageSize`, counting its calls (the coordinator's /_list). */
function fakeList(
  names: string[],
  pageSize: number,
): {
  list: (
    prefix: string,
    after: string | undefined,
    limit: number,
  ) => Promise<{ entries: ListEntry[]; truncated: boolean }>;
  calls: number;
} {
  const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const state = {
    calls: 0,
    list: async (prefix: string, after: string | undefined, limit: number) => {
      state.calls++;
      const from = sorted.filter(
        (n) =>
          n.startsWith(prefix) &&
          (after === undefined || Buffer.compare(Buffer.from(n), Buffer.from(after)) > 0),
      );
      const page = from.slice(0, Math.min(limit, pageSize));
      const entries = page.map((key) => ({
        key,
        shard: "1",
        size: 1,
        version: "v",
        lastModified: "",
        contentType: "",
        headers: {},
      }));
      return { entries, truncated: from.length > page.length };
    },
  };
  return state;
}

test("a delimiter folds keys into common prefixes and skips past them", async () => {
  const names = ["b/a.txt", "b/dir/1", "b/dir/2", "b/dir/3", "b/e.txt", "b/z/9", "other/x"];
  const fake = fakeList(names, 2);
  const got = await listKeys(fake.list, "b", { prefix: "", delimiter: "/", maxKeys: 1000, after: undefined });
  assert.deepEqual(
    got.contents.map((c) => c.key),
    ["a.txt", "e.txt"],
  );
  assert.deepEqual(got.prefixes, ["dir/", "z/"]);
  assert.equal(got.truncated, false);
});

test("pages of max-keys resume exactly after the last key or prefix", async () => {
  const names = Array.from({ length: 25 }, (_, i) => `b/k${String(i).padStart(3, "0")}`);
  names.push("b/p/1", "b/p/2", "b/q");
  const fake = fakeList(names, 7);
  const seen: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await listKeys(fake.list, "b", { prefix: "", delimiter: "/", maxKeys: 4, after });
    seen.push(...page.contents.map((c) => c.key), ...page.prefixes);
    if (!page.truncated) break;
    after = page.next;
  }
  // Every key and prefix exactly once (a page answers its keys and its prefixes apart).
  assert.deepEqual(seen.sort(), [...names.slice(0, 25).map((n) => n.slice(2)), "p/", "q"].sort());
});

test("a page of max-keys without a delimiter asks for the keys it needs and one more, not another page", async () => {
  const names = Array.from({ length: 30 }, (_, i) => `b/k${String(i).padStart(3, "0")}`);
  const asked: number[] = [];
  const fake = fakeList(names, 1000);
  const list = (prefix: string, after: string | undefined, limit: number) => {
    asked.push(limit);
    return fake.list(prefix, after, limit);
  };
  const page = await listKeys(list, "b", { prefix: "", delimiter: undefined, maxKeys: 10, after: undefined });
  assert.deepEqual(
    page.contents.map((c) => c.key),
    names.slice(0, 10).map((n) => n.slice(2)),
  );
  assert.equal(page.truncated, true);
  assert.deepEqual(asked, [11]);
  // Pages shorter than asked for: each round asks for the keys still needed and one more.
  const short = fakeList(names, 10);
  const limits: number[] = [];
  const last = await listKeys(
    (p, a, n) => {
      limits.push(n);
      return short.list(p, a, n);
    },
    "b",
    { prefix: "", delimiter: undefined, maxKeys: 30, after: undefined },
  );
  assert.equal(last.contents.length, 30);
  assert.equal(last.truncated, false);
  assert.deepEqual(limits, [31, 21, 11]);
});

test("rendezvous placement: stable, spread, and a new shard moves only the names it wins", () => {
  const shards = ["1", "2", "3"];
  const counts = new Map<string, number>();
  let moved = 0;
  for (let i = 0; i < 3000; i++) {
    const name = `bucket/key-${i}`;
    const home = homeShard(name, shards) as string;
    assert.equal(home, rankShards(name, shards)[0]);
    counts.set(home, (counts.get(home) ?? 0) + 1);
    const after = homeShard(name, [...shards, "4"]);
    if (after !== home) {
      moved++;
      assert.equal(after, "4");
    }
  }
  for (const s of shards) assert.ok((counts.get(s) ?? 0) > 800, `shard ${s}: ${counts.get(s)}`);
  assert.ok(moved > 500 && moved < 1000, `moved ${moved} of 3000`);
});
