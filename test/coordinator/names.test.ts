import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "undici";
import { setTimeout as sleep } from "node:timers/promises";
import { CoordinatorClient } from "../../src/client/coordinator-client.js";
import { hasCode } from "../../src/common/errors.js";
import { nodeUrl, startFixture, type Fixture } from "./fixture.js";
import { waitFor } from "../helpers/wait.js";

/** What the S3 front stands on: targeted uploads, stored headers and the cluster-wide listing. */

function clientFor(t: { after: (fn: () => Promise<void>) => void }): CoordinatorClient {
  const agent = new Agent();
  t.after(() => agent.close());
  return new CoordinatorClient(agent);
}

async function onNode(f: Fixture, id: string, key: string): Promise<Response> {
  return fetch(`${nodeUrl(f, id)}/${key}`);
}

async function put(url: string, key: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/${key}`, { method: "PUT", body, headers });
  return {
    status: res.status,
    json: (await res.json()) as Record<string, unknown>,
    version: res.headers.get("x-backpack-version"),
  };
}

void test("a targeted PUT (X-Backpack-Shard) stores the file on that shard, on every node of it", async (t) => {
  const f = await startFixture(t);
  const client = clientFor(t);
  for (let i = 0; i < 8; i++) {
    const r = await client.put(f.url, `t/${i}`, `body ${i}`, { shard: "2" });
    assert.equal(r.shardId, "2");
    assert.match(r.version, /^\d{16}-[0-9a-f]{4}$/);
    for (const id of ["3", "4"]) assert.equal(await (await onNode(f, id, `t/${i}`)).text(), `body ${i}`);
    for (const id of ["1", "2"]) assert.equal((await onNode(f, id, `t/${i}`)).status, 404);
  }
  const raw = await put(f.url, "t/raw", "x", { "x-backpack-shard": "1" });
  assert.equal(raw.status, 200);
  assert.deepEqual(raw.json, { shard_id: "1" });
  assert.ok(raw.version);
});

void test("a targeted PUT to an unknown, disabled or full shard is refused and nothing is stored", async (t) => {
  const f = await startFixture(t, { capacity: 1000 });
  await f.map.setShardEnabled("2", false);
  await waitFor(
    async () => (await clientFor(t).cluster(f.url)).shards.find((s) => s.id === "2")?.enabled === false,
    { what: "the coordinator to see shard 2 disabled" },
  );
  const cases: [Record<string, string>, string, number, string][] = [
    [{ "x-backpack-shard": "9" }, "small", 404, "NO_SUCH_SHARD"],
    [{ "x-backpack-shard": "2" }, "small", 409, "SHARD_UNAVAILABLE"],
    [{ "x-backpack-shard": "1" }, "y".repeat(2000), 409, "SHARD_UNAVAILABLE"],
    [{ "x-backpack-shard": " " }, "small", 400, "BAD_REQUEST"],
  ];
  for (const [headers, body, status, code] of cases) {
    const r = await put(f.url, "refused", body, headers);
    assert.equal(r.status, status, JSON.stringify(headers));
    assert.equal(r.json.code, code);
    assert.equal(typeof r.json.error, "string");
  }
  for (const id of ["1", "2", "3", "4"]) {
    assert.equal((await onNode(f, id, "refused")).status, 404, `node ${id}`);
  }
  await assert.rejects(clientFor(t).put(f.url, "refused", "z", { shard: "9" }), (err: unknown) =>
    hasCode(err, "NO_SUCH_SHARD"),
  );
});

void test("stored headers go to every replica and come back through the coordinator; over 8 KiB: 431, nothing stored", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  const headers = {
    "cache-control": "no-store",
    "content-disposition": 'attachment; filename="r.pdf"',
    "x-backpack-meta-s3-etag": '"abc"',
  };
  const r = await clientFor(t).put(f.url, "doc.pdf", "%PDF", { contentType: "application/pdf", headers });
  for (const method of ["GET", "HEAD"]) {
    const res = await fetch(`${f.url}/${r.shardId}:doc.pdf`, { method });
    assert.equal(res.status, 200);
    for (const [name, value] of Object.entries(headers))
      assert.equal(res.headers.get(name), value, `${method} ${name}`);
    assert.equal(res.headers.get("content-type"), "application/pdf");
  }
  for (const id of ["1", "2"]) {
    const res = await onNode(f, id, "doc.pdf");
    assert.equal(res.headers.get("x-backpack-meta-s3-etag"), '"abc"', `node ${id}`);
  }
  const head = await clientFor(t).head(f.url, "1", "doc.pdf");
  assert.deepEqual(head?.headers, headers);

  const big = await put(f.url, "big.txt", "x", { "x-backpack-meta-a": "a".repeat(9000) });
  assert.equal(big.status, 431);
  assert.equal(big.json.code, "HEADERS_TOO_LARGE");
  for (const id of ["1", "2"]) assert.equal((await onNode(f, id, "big.txt")).status, 404);
});

void test("GET /_list: every shard merged in key order, paged, newest version, deletes hidden, at once", async (t) => {
  const f = await startFixture(t);
  const client = clientFor(t);
  const keys = Array.from({ length: 30 }, (_, i) => `L/${String(i).padStart(2, "0")}`);
  for (const [i, key] of keys.entries()) {
    await client.put(f.url, key, `v1 ${key}`, {
      shard: i % 2 === 0 ? "1" : "2",
      headers: { "x-backpack-meta-i": String(i) },
    });
  }
  await client.put(f.url, "other/1", "not under the prefix");
  // An overwrite answers the newest; a delete is gone from the very next listing.
  const over = await client.put(f.url, "L/05", "v2, longer", { shard: "2" });
  const del = await fetch(`${f.url}/1:L/04`, { method: "DELETE" });
  assert.equal(del.status, 204);
  const live = keys.filter((k) => k !== "L/04");

  const seen: string[] = [];
  let after: string | undefined;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 10, "the listing ends");
    const page = await client.list(f.url, {
      prefix: "L/",
      limit: 7,
      ...(after !== undefined ? { after } : {}),
    });
    seen.push(...page.entries.map((e) => e.key));
    if (!page.truncated) break;
    assert.equal(page.entries.length, 7);
    after = page.entries[page.entries.length - 1]!.key;
  }
  assert.deepEqual(seen, live);

  const whole = await client.list(f.url, { prefix: "L/" });
  assert.equal(whole.truncated, false);
  const five = whole.entries.find((e) => e.key === "L/05");
  assert.equal(five?.version, over.version);
  assert.equal(five?.size, "v2, longer".length);
  assert.equal(five?.shard, "2");
  const six = whole.entries.find((e) => e.key === "L/06");
  assert.equal(six?.shard, "1");
  assert.deepEqual(six?.headers, { "x-backpack-meta-i": "6" });
  assert.equal(six?.contentType, "application/octet-stream");
  assert.ok(!Number.isNaN(Date.parse(six?.lastModified ?? "")));
  const fresh = await client.put(f.url, "L/99", "just now");
  assert.ok(
    (await client.list(f.url, { prefix: "L/9" })).entries.some(
      (e) => e.key === "L/99" && e.version === fresh.version,
    ),
  );
  assert.deepEqual(
    (await client.list(f.url, { prefix: "L/", after: "L/27" })).entries.map((e) => e.key),
    ["L/28", "L/29", "L/99"],
  );
  assert.deepEqual((await client.list(f.url, { prefix: "nothing/" })).entries, []);
});

void test("GET /_list: replicas that differ merge to the newest version; deletes filling whole pages are skipped", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"], "2": ["3"] } });
  const V = (n: number): string => `${String(1_800_000_000_000_000 + n)}-0001`;
  const onNodePut = async (id: string, key: string, body: string, version: string): Promise<void> => {
    const res = await fetch(`${nodeUrl(f, id)}/${key}`, {
      method: "PUT",
      body,
      headers: { "x-backpack-version": version },
    });
    assert.equal(res.status, 201);
  };
  const onNodeDelete = async (id: string, key: string, version: string): Promise<void> => {
    const res = await fetch(`${nodeUrl(f, id)}/${key}`, {
      method: "DELETE",
      headers: { "x-backpack-version": version },
    });
    assert.ok(res.status === 204 || res.status === 404);
  };
  await onNodePut("1", "m/newer-on-2", "old", V(1));
  await onNodePut("2", "m/newer-on-2", "newest!", V(2));
  await onNodePut("1", "m/deleted-on-1", "stale", V(1));
  await onNodeDelete("2", "m/deleted-on-1", V(2));
  await onNodePut("2", "m/only-on-2", "only", V(1));
  // The same name on two shards: the newer one wins.
  await onNodePut("1", "m/both-shards", "shard 1", V(5));
  await onNodePut("3", "m/both-shards", "shard 2 newer", V(6));
  // Deletes before the live keys, more than a page of them.
  for (let i = 0; i < 12; i++) await onNodeDelete("1", `m/a-deleted-${String(i).padStart(2, "0")}`, V(1));
  const client = clientFor(t);
  // Of shard 1's two nodes one sends its page and the other its summary, in turn: each way round, the
  // summary differs and the other page is asked for too.
  for (let turn = 0; turn < 2; turn++) {
    const page = await client.list(f.url, { prefix: "m/", limit: 3 });
    assert.deepEqual(
      page.entries.map((e) => [e.key, e.size, e.shard]),
      [
        ["m/both-shards", "shard 2 newer".length, "2"],
        ["m/newer-on-2", "newest!".length, "1"],
        ["m/only-on-2", "only".length, "1"],
      ],
    );
    assert.equal(page.entries[1]?.version, V(2));
  }
});

void test("GET /_list: a shard with one node down still lists; with none answering, 503", async (t) => {
  // A failed node is suspect for 1 ms here, so every listing asks it again.
  const f = await startFixture(t, { config: { suspectMs: 1 } });
  const client = clientFor(t);
  await client.put(f.url, "d/1", "one", { shard: "1" });
  await client.put(f.url, "d/2", "two", { shard: "2" });
  await f.stopNode("2");
  // Listings take turns at which node of a shard sends its page: the stopped node once sends it (its
  // replica's page is asked for instead), once its summary (left out).
  for (let turn = 0; turn < 2; turn++) {
    await sleep(5);
    assert.deepEqual(
      (await client.list(f.url, { prefix: "d/" })).entries.map((e) => e.key),
      ["d/1", "d/2"],
    );
  }
  await f.stopNode("1");
  const res = await fetch(`${f.url}/_list?prefix=d/`);
  assert.equal(res.status, 503);
  const body = (await res.json()) as { code: string; error: string };
  assert.equal(body.code, "UNAVAILABLE");
  assert.match(body.error, /shard 1/);
});

void test("GET /_list refuses a bad query with 400 BAD_REQUEST", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1"] } });
  for (const query of [
    "limit=0",
    "limit=1001",
    "limit=ten",
    "limit=",
    "prefix=%ZZ",
    "prefix=%C3",
    "colour=red",
    "after=a&after=b",
  ]) {
    const res = await fetch(`${f.url}/_list?${query}`);
    assert.equal(res.status, 400, query);
    const body = (await res.json()) as { code: string; error: string };
    assert.equal(body.code, "BAD_REQUEST", query);
    assert.ok(body.error.length > 0);
  }
  const ok = await fetch(`${f.url}/_list?prefix=caf%C3%A9&limit=1000`);
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { entries: [], truncated: false });
});

void test("GET /_list: a page whose keys all lie on one shard is whole (further rounds past the first share)", async (t) => {
  const f = await startFixture(t);
  const client = clientFor(t);
  const keys = Array.from({ length: 60 }, (_, i) => `one/${String(i).padStart(2, "0")}`);
  await Promise.all(keys.map((k) => client.put(f.url, k, k, { shard: "1" })));
  const first = await client.list(f.url, { prefix: "one/", limit: 40 });
  assert.deepEqual(
    first.entries.map((e) => e.key),
    keys.slice(0, 40),
  );
  assert.equal(first.truncated, true);
  const rest = await client.list(f.url, { prefix: "one/", limit: 40, after: "one/39" });
  assert.deepEqual(
    rest.entries.map((e) => e.key),
    keys.slice(40),
  );
  assert.equal(rest.truncated, false);
});
