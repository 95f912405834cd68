import assert from "node:assert/strict";
import { test } from "node:test";
import { etagListMatches, ifRangeHolds, isNotModified } from "../../src/node/conditional.js";
import { contentRange, parseRange } from "../../src/node/range.js";
import { UploadGate } from "../../src/node/upload-gate.js";

void test("parseRange: single ranges, suffixes, open ends, and what is ignored", () => {
  assert.equal(parseRange(undefined, 10), undefined);
  assert.deepEqual(parseRange("bytes=0-0", 10), { start: 0, end: 1 });
  assert.deepEqual(parseRange("bytes=2-5", 10), { start: 2, end: 6 });
  assert.deepEqual(parseRange("bytes=2-", 10), { start: 2, end: 10 });
  assert.deepEqual(parseRange("bytes=5-100", 10), { start: 5, end: 10 });
  assert.deepEqual(parseRange("bytes=-3", 10), { start: 7, end: 10 });
  assert.deepEqual(parseRange("bytes=-30", 10), { start: 0, end: 10 });
  assert.equal(parseRange("bytes=10-", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=0-", 0), "unsatisfiable");
  assert.equal(parseRange("bytes=5-2", 10), undefined);
  // Starts past the end are unsatisfiable however many digits they have; ends past it are cut to it.
  assert.equal(parseRange("bytes=99999999999999999999-", 10), "unsatisfiable");
  assert.equal(parseRange(`bytes=${"9".repeat(400)}-`, 10), "unsatisfiable");
  assert.equal(parseRange("bytes=99999999999999999999-99999999999999999999", 10), "unsatisfiable");
  assert.equal(parseRange("bytes=99999999999999999999-99999999999999999998", 10), undefined);
  assert.deepEqual(parseRange(`bytes=0-${"9".repeat(400)}`, 10), { start: 0, end: 10 });
  assert.deepEqual(parseRange("bytes=0002-0005", 10), { start: 2, end: 6 });
  assert.equal(parseRange("bytes=0-1,3-4", 10), undefined);
  assert.equal(parseRange("items=0-1", 10), undefined);
  assert.equal(parseRange("bytes=-", 10), undefined);
  assert.equal(parseRange("bytes=abc", 10), undefined);
  assert.equal(contentRange({ start: 2, end: 6 }, 10), "bytes 2-5/10");
});

void test("conditional requests: If-None-Match wins over If-Modified-Since; dates have whole seconds", () => {
  const v = { etag: '"abc-1"', modifiedMs: Date.parse("2024-01-02T03:04:05.678Z") };
  const none = { ifNoneMatch: undefined, ifModifiedSince: undefined };
  assert.equal(isNotModified(none, v), false);
  assert.equal(isNotModified({ ...none, ifNoneMatch: '"abc-1"' }, v), true);
  assert.equal(isNotModified({ ...none, ifNoneMatch: 'W/"abc-1"' }, v), true);
  assert.equal(isNotModified({ ...none, ifNoneMatch: '"x", "abc-1"' }, v), true);
  assert.equal(isNotModified({ ...none, ifNoneMatch: "*" }, v), true);
  assert.equal(isNotModified({ ...none, ifNoneMatch: '"other"' }, v), false);
  const at = "Tue, 02 Jan 2024 03:04:05 GMT";
  assert.equal(isNotModified({ ...none, ifModifiedSince: at }, v), true);
  assert.equal(isNotModified({ ...none, ifModifiedSince: "Tue, 02 Jan 2024 03:04:04 GMT" }, v), false);
  assert.equal(isNotModified({ ...none, ifModifiedSince: "garbage" }, v), false);
  assert.equal(isNotModified({ ifNoneMatch: '"other"', ifModifiedSince: at }, v), false);
  assert.equal(etagListMatches('"a", W/"b"', '"b"'), true);
  assert.equal(ifRangeHolds(undefined, v), true);
  assert.equal(ifRangeHolds('"abc-1"', v), true);
  assert.equal(ifRangeHolds('W/"abc-1"', v), false);
  assert.equal(ifRangeHolds('"zzz"', v), false);
  assert.equal(ifRangeHolds(at, v), true);
});

void test("UploadGate bounds uploads and bytes, but always admits a lone upload", () => {
  const gate = new UploadGate(2, 100);
  assert.equal(gate.tryEnter(500), true, "alone: admitted even past the byte bound");
  assert.equal(gate.tryEnter(1), false, "bytes full");
  gate.leave(500);
  assert.equal(gate.tryEnter(60), true);
  assert.equal(gate.tryEnter(30), true);
  assert.equal(gate.tryEnter(0), false, "uploads full");
  assert.equal(gate.tryGrow(20), false, "growing past the bound while others are in flight");
  assert.equal(gate.tryGrow(10), true);
  assert.equal(gate.inflightBytes, 100);
  gate.leave(70);
  gate.leave(30);
  assert.equal(gate.inflightUploads, 0);
  assert.equal(gate.inflightBytes, 0);
});
