import { test } from "node:test";
import assert from "node:assert/strict";
import type { NodeKeyEntry } from "../../src/client/node-client.js";
import { compareKeys } from "../../src/common/key.js";
import { mergeRound, type SourcePage } from "../../src/coordinator/list-merge.js";

const V = (n: number): string => `${String(1_800_000_000_000_000 + n)}-0001`;

function page(shard: string, more: boolean, ...entries: [string, number, boolean?][]): SourcePage {
  const list: NodeKeyEntry[] = entries.map(([key, v, deleted]) => ({
    key,
    version: V(v),
    size: v,
    ...(deleted ? { deleted: true as const } : {}),
  }));
  return { shard, more, entries: list };
}

void test("mergeRound: newest version of any replica and shard wins; a newer delete hides the key", () => {
  const { entries, bound } = mergeRound([
    page("1", false, ["a", 1], ["b", 2], ["c", 5, true]),
    page("1", false, ["a", 3], ["b", 1, true], ["c", 4]),
    page("2", false, ["a", 2], ["d", 1]),
  ]);
  assert.equal(bound, undefined);
  assert.deepEqual(
    entries.map((e) => [e.key, e.shard, e.size]),
    [
      ["a", "1", 3],
      ["b", "1", 2],
      ["d", "2", 1],
    ],
  );
  assert.equal(entries[0]?.contentType, "application/octet-stream");
  assert.equal(
    entries[0]?.lastModified,
    new Date(Math.floor(1_800_000_000_000_003 / 1e6) * 1000).toUTCString(),
  );
});

void test("mergeRound: final only up to the smallest last key of the pages that have more", () => {
  const { entries, bound } = mergeRound([
    page("1", true, ["a", 1], ["c", 1]),
    page("2", false, ["b", 1], ["d", 1], ["e", 1]),
    page("3", true, ["a", 2], ["f", 1]),
  ]);
  assert.equal(bound, "c");
  assert.deepEqual(
    entries.map((e) => e.key),
    ["a", "b", "c"],
  );
  // A page of deletes only still moves the bound on.
  const deletes = mergeRound([page("1", true, ["x", 1, true], ["y", 1, true]), page("2", false, ["z", 1])]);
  assert.deepEqual(deletes, { entries: [], bound: "y" });
});

void test("compareKeys is the byte order of the keys' UTF-8", () => {
  const samples = [
    "",
    "a",
    "ab",
    "a\u00e9",
    "\uffff",
    "\u{1f600}",
    "\ue000",
    "z",
    "\u{10000}",
    "a/b",
    "a-b",
    "\u0080",
  ];
  for (const a of samples) {
    for (const b of samples) {
      assert.equal(
        Math.sign(compareKeys(a, b)),
        Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))),
        `${JSON.stringify(a)} vs ${JSON.stringify(b)}`,
      );
    }
  }
});
