import assert from "node:assert/strict";
import { test } from "node:test";
import { ETA_AFTER_MS, progressLine } from "../../src/cli/progress.js";
import { closestNames, editDistance } from "../../src/cli/suggest.js";
import { isHost } from "../../src/cli/options.js";

void test("edit distance counts a swap of two neighbours as one edit", () => {
  assert.equal(editDistance("stauts", "status"), 1);
  assert.equal(editDistance("sttat", "stat"), 1);
  assert.equal(editDistance("put", "put"), 0);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("kitten", "sitting"), 3);
});

void test("closest names: the best matches only, prefixes count, far words get none", () => {
  const names = ["put", "get", "status", "stat", "queue status", "queue replay", "repair", "replicator"];
  const lastToo = (n: string): string[] => [n, n.split(" ").pop() ?? n];
  assert.deepEqual(closestNames("stauts", names, lastToo), ["status", "queue status"]);
  assert.deepEqual(closestNames("replay", names, lastToo), ["queue replay"]);
  assert.deepEqual(closestNames("rep", names), ["repair", "replicator"]);
  assert.deepEqual(closestNames("xyzzy", names), []);
  assert.deepEqual(closestNames("data", names), []);
  assert.deepEqual(closestNames("x", names), []);
});

void test("host names and addresses", () => {
  for (const h of ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "one.local", "node-1.example.com"]) {
    assert.equal(isHost(h), true, h);
  }
  for (const h of ["", "not a host", "bad_host!", "-", "a..b", "-a", "port:1"])
    assert.equal(isHost(h), false, h);
});

void test("progress: the ETA shows only once the rate was measured long enough", () => {
  const state = { filesDone: 1, filesTotal: 4, filesFailed: 0, bytesDone: 250, bytesTotal: 1000 };
  assert.doesNotMatch(progressLine({ ...state, elapsedMs: 100 }), /ETA/);
  assert.doesNotMatch(progressLine({ ...state, elapsedMs: ETA_AFTER_MS - 1 }), /ETA/);
  // 250 bytes in 2 s: the other 750 take 6 s.
  assert.match(progressLine({ ...state, elapsedMs: 2000 }), /ETA 6s/);
  assert.doesNotMatch(progressLine({ ...state, bytesDone: 1000, filesDone: 4, elapsedMs: 5000 }), /ETA/);
  // Counting files only (no byte total, as repair does): the ETA comes from the files.
  const files = { filesDone: 10, filesTotal: 40, filesFailed: 0, bytesDone: 0, bytesTotal: 0 };
  assert.match(progressLine({ ...files, elapsedMs: 5000 }), /^\[######-+\] 10\/40 files {2}ETA 15s$/);
});
