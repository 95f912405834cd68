import assert from "node:assert/strict";
import { test } from "node:test";
import { formatVersion, parseVersion } from "../../src/common/version.js";
import { NodeService } from "../../src/node/service.js";
import { nodeConfig } from "../../src/node/config.js";
import { tempDir } from "../helpers/tmp.js";
import { http, startNode } from "./node-harness.js";

const V = (stamp: number, origin = 1): string =>
  formatVersion({ stamp: 1_800_000_000_000_000 + stamp, origin });

void test("versions over HTTP: PUT, GET and HEAD carry X-Backpack-Version; an older write or copy is refused with 409", async (t) => {
  const node = await startNode(t);
  const put = await http(node.url, "/k", {
    method: "PUT",
    body: "v10",
    headers: { "x-backpack-version": V(10) },
  });
  assert.equal(put.status, 201);
  assert.equal(put.headers["x-backpack-version"], V(10));
  for (const method of ["GET", "HEAD"] as const) {
    const r = await http(node.url, "/k", { method });
    assert.equal(r.headers["x-backpack-version"], V(10), method);
  }
  for (const older of [V(9), V(10), V(10, 0)]) {
    const r = await http(node.url, "/k", {
      method: "PUT",
      body: "old",
      headers: { "x-backpack-version": older },
    });
    assert.equal(r.status, 409, older);
    assert.equal(r.json().code, "STALE_VERSION");
    assert.equal(r.headers["x-backpack-version"], V(10), "the answer names the version held");
  }
  assert.equal((await http(node.url, "/k")).text, "v10", "nothing older was stored");
  // A PUT without a version is stamped newer than what the node holds (a plain client writing to a node).
  const plain = await http(node.url, "/k", { method: "PUT", body: "plain" });
  assert.equal(plain.status, 201);
  assert.ok(String(plain.headers["x-backpack-version"]) > V(10));
  const bad = await http(node.url, "/k", {
    method: "PUT",
    body: "x",
    headers: { "x-backpack-version": "yesterday" },
  });
  assert.equal(bad.status, 400);
  assert.equal((await http(node.url, "/k")).text, "plain");
});

void test("a versioned DELETE leaves a tombstone on a node that does not hold the file; a late copy is refused, also after a restart", async (t) => {
  const dataDir = await tempDir(t, "backpack-node-");
  let node = await startNode(t, { dataDir });
  const del = await http(node.url, "/late", { method: "DELETE", headers: { "x-backpack-version": V(20) } });
  assert.equal(del.status, 404, "nothing was held");
  assert.equal(del.headers["x-backpack-version"], V(20), "the tombstone is recorded all the same");
  const head = await http(node.url, "/late", { method: "HEAD" });
  assert.equal(head.status, 404);
  assert.equal(head.headers["x-backpack-version"], V(20), "a 404 names the delete it remembers");
  await node.stop();
  node = new NodeService(nodeConfig({ dataDir, host: "127.0.0.1", port: 0 }), { stopGraceMs: 1000 });
  await node.start();
  t.after(() => node.stop());
  const copy = await http(node.url, "/late", {
    method: "PUT",
    body: "v19",
    headers: { "x-backpack-version": V(19) },
  });
  assert.equal(copy.status, 409, "the copy queued before the delete does not bring the file back");
  assert.equal((await http(node.url, "/late")).status, 404);
  const newer = await http(node.url, "/late", {
    method: "PUT",
    body: "v21",
    headers: { "x-backpack-version": V(21) },
  });
  assert.equal(newer.status, 201);
  const gone = await http(node.url, "/late", { method: "DELETE", headers: { "x-backpack-version": V(22) } });
  assert.equal(gone.status, 204);
  assert.equal(gone.headers["x-backpack-size"], "3");
  const stale = await http(node.url, "/late", { method: "DELETE", headers: { "x-backpack-version": V(21) } });
  assert.equal(stale.status, 409);
  assert.equal(parseVersion(String(stale.headers["x-backpack-version"]))?.stamp, 1_800_000_000_000_022);
});
