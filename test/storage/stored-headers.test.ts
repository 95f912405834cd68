import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { hasCode } from "../../src/common/errors.js";
import {
  decodeStoredHeaders,
  encodeStoredHeaders,
  pickStoredHeaders,
} from "../../src/common/stored-headers.js";
import {
  decodeRecordHeader,
  encodeRecordHead,
  RECORD_HEADER_BYTES,
  splitMeta,
} from "../../src/storage/record.js";
import { tempDir } from "../helpers/tmp.js";
import { BIG, readAll, storeFor } from "./helpers.js";

const HEADERS = {
  "cache-control": "max-age=60, public",
  "content-disposition": 'attachment; filename="a b.txt"',
  expires: "Thu, 01 Dec 2033 16:00:00 GMT",
  "x-backpack-meta-s3-etag": '"0123456789abcdef0123456789abcdef"',
  "x-backpack-meta-s3-owner": "caf\u00e9 \u00ff:colon",
};

void test("stored headers: picked from request headers (names lower-cased), encoded and decoded back", () => {
  const picked = pickStoredHeaders({
    "Cache-Control": "no-cache",
    "x-backpack-meta-color": "blue",
    "content-type": "text/plain",
    "x-backpack-meta-": "no name",
    authorization: "Bearer secret",
    "content-length": 4,
  });
  assert.deepEqual(picked, { "cache-control": "no-cache", "x-backpack-meta-color": "blue" });
  assert.equal(pickStoredHeaders({ "content-type": "a/b" }), undefined, "none: undefined");
  assert.deepEqual(decodeStoredHeaders(encodeStoredHeaders(HEADERS)), HEADERS);
});

void test("stored headers over 8 KiB, or with a character HTTP cannot carry, are refused", () => {
  assert.throws(
    () => pickStoredHeaders({ "x-backpack-meta-big": "x".repeat(8200) }),
    (err: unknown) => hasCode(err, "HEADERS_TOO_LARGE"),
  );
  assert.throws(
    () => pickStoredHeaders({ "x-backpack-meta-a": "line\nbreak" }),
    (err: unknown) => hasCode(err, "BAD_REQUEST"),
  );
  assert.throws(
    () => pickStoredHeaders({ "x-backpack-meta-a": "\u2603" }),
    (err: unknown) => hasCode(err, "BAD_REQUEST"),
  );
});

void test("a record keeps its stored headers across overwrites, deletes, a restart with and without a checkpoint", async (t) => {
  const dir = await tempDir(t);
  // Small volumes: every record in one of its own, so that compaction has garbage volumes to rewrite.
  const opts = { volumeMaxBytes: 256 };
  let store = await storeFor(t, dir, opts);
  await store.put("with", Buffer.from("body one"), { ...BIG, contentType: "text/plain", headers: HEADERS });
  await store.put("without", Buffer.from("plain"), { ...BIG, contentType: "text/plain" });
  await store.put("changed", Buffer.from("v1"), { ...BIG, headers: { "cache-control": "a" } });
  await store.put("changed", Buffer.from("v2"), { ...BIG, headers: { "cache-control": "b" } });
  await store.put("dropped", Buffer.from("v1"), { ...BIG, headers: { "cache-control": "a" } });
  await store.put("dropped", Buffer.from("v2"), BIG);
  await store.put("gone", Buffer.from("x"), { ...BIG, headers: { expires: "0" } });
  await store.delete("gone");
  const check = async (): Promise<void> => {
    assert.deepEqual(store.stat("with")?.headers, HEADERS);
    assert.equal(store.stat("with")?.contentType, "text/plain");
    assert.equal((await readAll(store, "with")).toString(), "body one");
    assert.equal(
      (await store.read("with")).info.headers?.["x-backpack-meta-s3-owner"],
      HEADERS["x-backpack-meta-s3-owner"],
    );
    assert.equal(store.stat("without")?.headers, undefined);
    assert.deepEqual(store.stat("changed")?.headers, { "cache-control": "b" });
    assert.equal((await readAll(store, "changed")).toString(), "v2");
    assert.equal(store.stat("dropped")?.headers, undefined);
    assert.equal(store.stat("gone"), undefined);
  };
  await check();
  await store.close();
  store = await storeFor(t, dir, opts); // from the checkpoint written at close
  await check();
  // Compaction moves records: their headers stay readable.
  await store.compact();
  assert.ok(store.stats().compactions > 0, "volumes were compacted");
  await check();
  await store.close();
  await rm(`${dir}/index.ckpt`);
  store = await storeFor(t, dir, opts); // replayed from the volumes
  await check();
});

void test("a put with stored headers over the limit is refused and nothing is stored", async (t) => {
  const store = await storeFor(t, await tempDir(t));
  await assert.rejects(
    store.put("k", Buffer.from("x"), { ...BIG, headers: { "x-backpack-meta-a": "y".repeat(9000) } }),
    (err: unknown) => hasCode(err, "HEADERS_TOO_LARGE"),
  );
  assert.equal(store.stat("k"), undefined);
  assert.equal(store.stats().objects, 0);
});

void test("record format: format 3 only when a record has stored headers; format 2 records are read as before", () => {
  const base = {
    key: Buffer.from("k"),
    contentType: Buffer.from("text/plain"),
    size: 0,
    version: { stamp: 1, origin: 0 },
    bodyCrc: 0,
    tombstone: false,
  };
  const plain = encodeRecordHead({ ...base, headers: Buffer.alloc(0) }, 7);
  assert.equal(plain[12], 2);
  const h2 = decodeRecordHeader(plain)!;
  assert.equal(h2.hasHeaders, false);
  const encoded = encodeStoredHeaders({ "cache-control": "x" });
  const withHeaders = encodeRecordHead({ ...base, headers: encoded }, 7);
  assert.equal(withHeaders[12], 3);
  const h3 = decodeRecordHeader(withHeaders)!;
  assert.equal(h3.hasHeaders, true);
  assert.equal(h3.metaBytes, "text/plain".length + encoded.length);
  const meta = withHeaders.subarray(RECORD_HEADER_BYTES + 1, h3.headBytes);
  const split = splitMeta(meta, true);
  assert.equal(split.contentType.toString(), "text/plain");
  assert.deepEqual(decodeStoredHeaders(split.headers), { "cache-control": "x" });
  // A format-2 meta is the content type whole, whatever it holds.
  assert.equal(splitMeta(Buffer.from("a\nb"), false).contentType.toString(), "a\nb");
});
