import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { crc32 } from "node:zlib";
import { etagOf, formatChecksum } from "../../src/common/checksum.js";
import { tempDir } from "../helpers/tmp.js";
import { http, startNode } from "./node-harness.js";

void test("PUT → 201 with ETag and checksum; GET and HEAD answer the same headers", async (t) => {
  const node = await startNode(t);
  const body = randomBytes(5000);
  const put = await http(node.url, "/dir/sub/file.jpg", {
    method: "PUT",
    body,
    headers: { "content-type": "image/jpeg" },
  });
  assert.equal(put.status, 201);
  assert.equal(put.body.length, 0);
  const crc = crc32(body);
  assert.equal(put.headers["x-backpack-checksum"], formatChecksum(crc));
  assert.equal(put.headers.etag, etagOf(crc, body.length));

  const get = await http(node.url, "/dir/sub/file.jpg");
  assert.equal(get.status, 200);
  assert.deepEqual(get.body, body);
  assert.equal(get.headers["content-length"], String(body.length));
  assert.equal(get.headers["content-type"], "image/jpeg");
  assert.equal(get.headers.etag, etagOf(crc, body.length));
  assert.equal(get.headers["accept-ranges"], "bytes");
  assert.equal(get.headers["x-backpack-checksum"], formatChecksum(crc));
  assert.ok(!Number.isNaN(Date.parse(String(get.headers["last-modified"]))));

  const head = await http(node.url, "/dir/sub/file.jpg", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  for (const h of [
    "content-length",
    "content-type",
    "etag",
    "last-modified",
    "accept-ranges",
    "x-backpack-checksum",
  ]) {
    assert.equal(head.headers[h], get.headers[h], h);
  }
});

void test("no Content-Type stored → application/octet-stream; empty body; overwrite supersedes", async (t) => {
  const node = await startNode(t);
  assert.equal((await http(node.url, "/a", { method: "PUT", body: "one" })).status, 201);
  let get = await http(node.url, "/a");
  assert.equal(get.headers["content-type"], "application/octet-stream");
  assert.equal(get.text, "one");
  // Reads answered from the read cache carry the headers of the record they read, also after an overwrite.
  const first = await http(node.url, "/a");
  assert.equal(first.headers.etag, get.headers.etag);
  const put = await http(node.url, "/a", {
    method: "PUT",
    body: "two!",
    headers: { "content-type": "text/plain" },
  });
  assert.equal(put.status, 201);
  for (let i = 0; i < 2; i++) {
    get = await http(node.url, "/a");
    assert.equal(get.text, "two!");
    assert.equal(get.headers.etag, put.headers.etag);
    assert.notEqual(get.headers.etag, first.headers.etag);
    assert.equal(get.headers["content-type"], "text/plain");
    assert.equal(get.headers["content-length"], "4");
  }
  assert.equal((await http(node.url, "/empty", { method: "PUT", body: Buffer.alloc(0) })).status, 201);
  get = await http(node.url, "/empty");
  assert.equal(get.status, 200);
  assert.equal(get.headers["content-length"], "0");
  assert.equal(get.body.length, 0);
});

void test("keys: percent-decoded, query string ignored (a ?v=2 cache-buster is the same file)", async (t) => {
  const node = await startNode(t);
  assert.equal((await http(node.url, "/caf%C3%A9/a%20b.txt?v=1", { method: "PUT", body: "x" })).status, 201);
  assert.equal((await http(node.url, "/café/a b.txt".replace(" ", "%20"))).text, "x");
  assert.equal((await http(node.url, "/caf%c3%a9/a%20b.txt?v=2")).text, "x");
  assert.equal((await http(node.url, "/caf%C3%A9/a%20b.txt")).status, 200);
});

void test("GET/HEAD/DELETE of a missing key → 404 JSON; DELETE → 204, then 404", async (t) => {
  const node = await startNode(t);
  const get = await http(node.url, "/nothing");
  assert.equal(get.status, 404);
  assert.equal(get.json().code, "NOT_FOUND");
  assert.equal(typeof get.json().error, "string");
  assert.equal((await http(node.url, "/nothing", { method: "HEAD" })).status, 404);
  assert.equal((await http(node.url, "/nothing", { method: "DELETE" })).status, 404);
  await http(node.url, "/x", { method: "PUT", body: "abc" });
  const del = await http(node.url, "/x", { method: "DELETE" });
  assert.equal(del.status, 204);
  assert.equal((await http(node.url, "/x")).status, 404);
  assert.equal((await http(node.url, "/x", { method: "DELETE" })).status, 404);
});

void test("Range → 206 with Content-Range, unsatisfiable → 416, If-Range that does not hold → 200", async (t) => {
  const node = await startNode(t);
  const body = Buffer.from("0123456789");
  await http(node.url, "/r", { method: "PUT", body });
  let res = await http(node.url, "/r", { headers: { range: "bytes=2-5" } });
  assert.equal(res.status, 206);
  assert.equal(res.text, "2345");
  assert.equal(res.headers["content-range"], "bytes 2-5/10");
  assert.equal(res.headers["content-length"], "4");
  res = await http(node.url, "/r", { headers: { range: "bytes=-3" } });
  assert.equal(res.status, 206);
  assert.equal(res.text, "789");
  res = await http(node.url, "/r", { headers: { range: "bytes=7-" } });
  assert.equal(res.text, "789");
  res = await http(node.url, "/r", { headers: { range: "bytes=10-" } });
  assert.equal(res.status, 416);
  assert.equal(res.json().code, "RANGE_NOT_SATISFIABLE");
  assert.equal(res.headers["content-range"], "bytes */10");
  res = await http(node.url, "/r", { headers: { range: "bytes=1-2", "if-range": '"stale"' } });
  assert.equal(res.status, 200);
  assert.equal(res.text, "0123456789");
  const etag = String(res.headers.etag);
  res = await http(node.url, "/r", { headers: { range: "bytes=1-2", "if-range": etag } });
  assert.equal(res.status, 206);
  assert.equal(res.text, "12");
  res = await http(node.url, "/r", { method: "HEAD", headers: { range: "bytes=1-2" } });
  assert.equal(res.status, 206);
  assert.equal(res.headers["content-length"], "2");
  // A range of a large (streamed) body.
  const big = randomBytes(3 * 1024 * 1024);
  await http(node.url, "/big", { method: "PUT", body: big });
  res = await http(node.url, "/big", { headers: { range: "bytes=1000000-2999999" } });
  assert.equal(res.status, 206);
  assert.deepEqual(res.body, big.subarray(1_000_000, 3_000_000));
  res = await http(node.url, "/big");
  assert.deepEqual(res.body, big);
});

void test("If-None-Match and If-Modified-Since → 304 with validators, no body", async (t) => {
  const node = await startNode(t);
  await http(node.url, "/c", { method: "PUT", body: "cached" });
  const first = await http(node.url, "/c");
  const etag = String(first.headers.etag);
  const lastModified = String(first.headers["last-modified"]);
  let res = await http(node.url, "/c", { headers: { "if-none-match": etag } });
  assert.equal(res.status, 304);
  assert.equal(res.body.length, 0);
  assert.equal(res.headers.etag, etag);
  res = await http(node.url, "/c", { method: "HEAD", headers: { "if-none-match": `"x", ${etag}` } });
  assert.equal(res.status, 304);
  res = await http(node.url, "/c", { headers: { "if-none-match": '"other"' } });
  assert.equal(res.status, 200);
  res = await http(node.url, "/c", { headers: { "if-modified-since": lastModified } });
  assert.equal(res.status, 304);
  res = await http(node.url, "/c", { headers: { "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" } });
  assert.equal(res.status, 200);
  assert.equal(res.text, "cached");
});

void test("conditional PUT/DELETE: 412 for the same version, a newer write, or a later delete", async (t) => {
  const node = await startNode(t);
  await http(node.url, "/w", { method: "PUT", body: "v1" });
  const etag = String((await http(node.url, "/w", { method: "HEAD" })).headers.etag);
  const past = "Thu, 01 Jan 1970 00:00:00 GMT";
  const future = new Date(Date.now() + 60_000).toUTCString();
  // The node holds this version: refused, with its ETag, and nothing rewritten.
  let res = await http(node.url, "/w", { method: "PUT", body: "v1", headers: { "if-none-match": etag } });
  assert.equal(res.status, 412);
  assert.equal((JSON.parse(res.text) as { code: string }).code, "PRECONDITION_FAILED");
  assert.equal(res.headers.etag, etag);
  // Written after the date: refused (another ETag shows it is a different version).
  res = await http(node.url, "/w", {
    method: "PUT",
    body: "old",
    headers: { "if-none-match": '"other"', "if-unmodified-since": past },
  });
  assert.equal(res.status, 412);
  assert.equal((await http(node.url, "/w")).text, "v1");
  res = await http(node.url, "/w", { method: "DELETE", headers: { "if-unmodified-since": past } });
  assert.equal(res.status, 412);
  // Conditions that hold: stored / deleted.
  res = await http(node.url, "/w", {
    method: "PUT",
    body: "v2",
    headers: { "if-none-match": '"other"', "if-unmodified-since": future },
  });
  assert.equal(res.status, 201);
  assert.equal((await http(node.url, "/w")).text, "v2");
  res = await http(node.url, "/w", { method: "DELETE", headers: { "if-unmodified-since": future } });
  assert.equal(res.status, 204);
  // A delete counts as a change: an older write cannot bring the file back; a newer one can.
  res = await http(node.url, "/w", { method: "PUT", body: "v1", headers: { "if-unmodified-since": past } });
  assert.equal(res.status, 412);
  assert.equal(res.headers.etag, undefined);
  assert.equal((await http(node.url, "/w")).status, 404);
  res = await http(node.url, "/w", { method: "PUT", body: "v3", headers: { "if-unmodified-since": future } });
  assert.equal(res.status, 201);
  // A refused small PUT keeps the connection usable; a bad date is ignored (RFC 9110).
  res = await http(node.url, "/w", { method: "PUT", body: "v4", headers: { "if-unmodified-since": "soon" } });
  assert.equal(res.status, 201);
  const stats = JSON.parse((await http(node.url, "/stats")).text) as { refused: { precondition: number } };
  assert.equal(stats.refused.precondition, 4);
});

void test("chunked uploads are stored (up to the limit)", async (t) => {
  const node = await startNode(t, { maxBodyBytes: 1024 * 1024 });
  const parts = [randomBytes(1000), randomBytes(200_000), randomBytes(5)];
  async function* chunks(): AsyncGenerator<Buffer> {
    for (const p of parts) yield p;
  }
  const put = await http(node.url, "/chunked", { method: "PUT", body: chunks() });
  assert.equal(put.status, 201);
  const get = await http(node.url, "/chunked");
  assert.deepEqual(get.body, Buffer.concat(parts));
  assert.equal(put.headers["x-backpack-checksum"], formatChecksum(crc32(Buffer.concat(parts))));
});

void test("X-Backpack-Checksum on PUT: a matching body is stored, a mismatch is refused and nothing stored", async (t) => {
  const node = await startNode(t);
  const body = Buffer.from("checked body");
  const good = await http(node.url, "/k", {
    method: "PUT",
    body,
    headers: { "x-backpack-checksum": formatChecksum(crc32(body)) },
  });
  assert.equal(good.status, 201);
  const bad = await http(node.url, "/k2", {
    method: "PUT",
    body,
    headers: { "x-backpack-checksum": formatChecksum((crc32(body) ^ 1) >>> 0) },
  });
  assert.equal(bad.status, 502);
  assert.equal(bad.json().code, "CHECKSUM_MISMATCH");
  assert.equal((await http(node.url, "/k2")).status, 404);
  const malformed = await http(node.url, "/k3", {
    method: "PUT",
    body,
    headers: { "x-backpack-checksum": "xyz" },
  });
  assert.equal(malformed.status, 400);
  assert.equal(malformed.json().code, "BAD_CHECKSUM_HEADER");
});

void test("unknown methods → 405 with Allow; reserved paths answer GET/HEAD only", async (t) => {
  const node = await startNode(t);
  for (const method of ["POST", "PATCH", "OPTIONS"] as const) {
    const res = await http(node.url, "/file", { method });
    assert.equal(res.status, 405, method);
    assert.equal(res.json().code, "METHOD_NOT_ALLOWED");
    assert.equal(res.headers.allow, "GET, HEAD, PUT, DELETE");
  }
  const res = await http(node.url, "/stats", { method: "PUT", body: "x" });
  assert.equal(res.status, 405);
  assert.equal(res.headers.allow, "GET, HEAD");
  assert.equal((await http(node.url, "/healthz", { method: "DELETE" })).status, 405);
});

void test("/stats keeps the original's fields; /metrics is Prometheus text; /healthz answers ok", async (t) => {
  const node = await startNode(t);
  await http(node.url, "/s", { method: "PUT", body: "12345" });
  await http(node.url, "/s");
  await http(node.url, "/s");
  const stats = (await http(node.url, "/stats")).json() as Record<
    string,
    { count: number; bytes: number; avg: number }
  >;
  assert.equal(stats.puts?.count, 1);
  assert.equal(stats.puts?.bytes, 5);
  assert.equal(stats.gets?.count, 2);
  assert.equal(stats.gets?.bytes, 10);
  assert.equal(typeof stats.gets?.avg, "number");
  assert.equal(typeof stats.puts?.avg, "number");
  const metrics = await http(node.url, "/metrics");
  assert.equal(metrics.status, 200);
  assert.match(String(metrics.headers["content-type"]), /text\/plain/);
  assert.match(metrics.text, /^backpack_node_gets_total 2$/m);
  assert.match(metrics.text, /^backpack_node_objects 1$/m);
  // The first GET read the record from the disk, the second from the read cache.
  assert.match(metrics.text, /^backpack_node_read_cache_misses_total 1$/m);
  assert.match(metrics.text, /^backpack_node_read_cache_hits_total 1$/m);
  assert.match(metrics.text, /backpack_node_put_duration_seconds_bucket/);
  const health = await http(node.url, "/healthz");
  assert.equal(health.status, 200);
  assert.deepEqual(health.json(), { status: "ok" });
  assert.equal((await http(node.url, "/stats?x=1")).status, 200);
});

void test("a background GET (X-Backpack-Background: 1) is answered as any GET and leaves the read cache as it was", async (t) => {
  const node = await startNode(t);
  await http(node.url, "/b", { method: "PUT", body: "background" });
  const cache = async (): Promise<{ hits: number; misses: number; bytes: number }> => {
    const text = (await http(node.url, "/metrics")).text;
    const value = (name: string): number =>
      Number(new RegExp(`^backpack_node_read_cache_${name} (\\d+)$`, "m").exec(text)?.[1]);
    return { hits: value("hits_total"), misses: value("misses_total"), bytes: value("bytes") };
  };
  const background = { headers: { "x-backpack-background": "1" } };
  const first = await http(node.url, "/b", background);
  assert.equal(first.status, 200);
  assert.equal(first.text, "background");
  assert.ok(first.headers["x-backpack-checksum"], "the checksum goes with it, as with any GET");
  assert.deepEqual(await cache(), { hits: 0, misses: 1, bytes: 0 }, "read from the volume, not kept");
  assert.equal((await http(node.url, "/b", background)).text, "background");
  assert.deepEqual(await cache(), { hits: 0, misses: 2, bytes: 0 });
  // A client's GET keeps it; a background GET is then answered from the cache.
  assert.equal((await http(node.url, "/b")).text, "background");
  const kept = await cache();
  assert.equal(kept.misses, 3);
  assert.ok(kept.bytes > 0, "a client's read is kept");
  assert.equal((await http(node.url, "/b", background)).text, "background");
  assert.equal((await cache()).hits, 1);
});

void test("write token: PUT/DELETE need Bearer (401 without, 403 wrong); GET/HEAD stay open", async (t) => {
  const node = await startNode(t, { writeToken: "s3cret-token" });
  let res = await http(node.url, "/t", { method: "PUT", body: "x" });
  assert.equal(res.status, 401);
  assert.equal(res.json().code, "UNAUTHORIZED");
  res = await http(node.url, "/t", { method: "PUT", body: "x", headers: { authorization: "Bearer wrong" } });
  assert.equal(res.status, 403);
  assert.equal(res.json().code, "FORBIDDEN");
  res = await http(node.url, "/t", { method: "PUT", body: "x", headers: { authorization: "Basic abc" } });
  assert.equal(res.status, 401);
  assert.equal((await http(node.url, "/t")).status, 404, "nothing was stored");
  const auth = { authorization: "Bearer s3cret-token" };
  assert.equal((await http(node.url, "/t", { method: "PUT", body: "x", headers: auth })).status, 201);
  assert.equal((await http(node.url, "/t")).text, "x");
  assert.equal((await http(node.url, "/t", { method: "HEAD" })).status, 200);
  assert.equal((await http(node.url, "/t", { method: "DELETE" })).status, 401);
  assert.equal(
    (await http(node.url, "/t", { method: "DELETE", headers: { authorization: "Bearer no" } })).status,
    403,
  );
  assert.equal((await http(node.url, "/t", { method: "DELETE", headers: auth })).status, 204);
});

void test("a corrupt record is answered 502 CHECKSUM_MISMATCH and counted, never served", async (t) => {
  const dataDir = await tempDir(t);
  const node = await startNode(t, { dataDir });
  const marker = Buffer.from("a-very-recognisable-body-" + "z".repeat(100));
  await http(node.url, "/corrupt", { method: "PUT", body: marker });
  // Flip one byte of the body inside the volume file, behind the node's back.
  assert.ok(await flipInVolumes(dataDir, marker, 30), "found the record in a volume");
  const res = await http(node.url, "/corrupt");
  assert.equal(res.status, 502);
  assert.equal(res.json().code, "CHECKSUM_MISMATCH");
  assert.ok(!res.body.includes(Buffer.from("recognisable")));
  const stats = (await http(node.url, "/stats")).json() as { refused: { checksum_mismatch: number } };
  assert.equal(stats.refused.checksum_mismatch, 1);
  assert.match((await http(node.url, "/metrics")).text, /^backpack_node_checksum_errors_total [1-9]/m);
});

async function flipInVolumes(dir: string, marker: Buffer, offset: number): Promise<boolean> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (await flipInVolumes(p, marker, offset)) return true;
      continue;
    }
    const content = await readFile(p);
    const at = content.indexOf(marker);
    if (at === -1) continue;
    const fh = await open(p, "r+");
    await fh.write(Buffer.from([(content[at + offset] ?? 0) ^ 0xff]), 0, 1, at + offset);
    await fh.close();
    return true;
  }
  return false;
}

void test("a corrupt large (streamed) record is never delivered whole: the transfer is cut", async (t) => {
  const dataDir = await tempDir(t);
  const node = await startNode(t, { dataDir });
  const big = Buffer.alloc(9 * 1024 * 1024, 0x61);
  const marker = Buffer.from("middle-of-the-big-body-marker");
  marker.copy(big, 4 * 1024 * 1024);
  assert.equal((await http(node.url, "/bigcorrupt", { method: "PUT", body: big })).status, 201);
  assert.ok(await flipInVolumes(dataDir, marker, 3), "found the record in a volume");
  const outcome = await http(node.url, "/bigcorrupt").then(
    (res) => (res.status === 200 && res.body.equals(big) ? "served whole" : "not served"),
    () => "cut",
  );
  assert.notEqual(outcome, "served whole");
  assert.equal((await http(node.url, "/healthz")).status, 200);
});

void test("stop() drains in-flight work, then refuses; idempotent", async (t) => {
  const node = await startNode(t);
  await http(node.url, "/d", { method: "PUT", body: "x" });
  const url = node.url;
  await Promise.all([node.stop(), node.stop()]);
  await assert.rejects(http(url, "/d"));
});
