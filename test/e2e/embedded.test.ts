import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { runBin, startProcess } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";

/** The embedded cluster as a user runs it: the real command in a child process, the client commands against it. */
test("backpack dev: upload a directory with backpack put, read it back byte-exact, restart, read again", async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, "data");
  const files = new Map<string, Buffer>();
  const src = join(dir, "upload");
  const sizes = [0, 1, 100, 4096, 65_537, 1_048_576, 3_000_001];
  for (const [i, size] of sizes.entries()) {
    const rel = i % 2 === 0 ? `f${i}.bin` : `sub/dir ${i}/é${i}.bin`;
    files.set(rel, randomBytes(size));
  }
  // Types come from the names: a name without a known one is stored without a type.
  const types: Record<string, string> = {
    "notes.txt": "text/plain",
    "sub/photo.JPG": "image/jpeg",
    "page.html": "text/html",
    "f0.bin": "application/octet-stream",
    README: "application/octet-stream",
  };
  files.set("notes.txt", Buffer.from("hello, backpack!\n"));
  files.set("sub/photo.JPG", randomBytes(2048));
  files.set("page.html", Buffer.from("<p>hi</p>\n"));
  files.set("README", Buffer.from("no extension\n"));
  for (const [rel, body] of files) {
    await mkdir(join(src, rel, ".."), { recursive: true });
    await writeFile(join(src, rel), body);
  }

  const cluster = await startProcess(t, {
    command: "backpack",
    args: ["dev", "--data", data, "--port", "0"],
    ready: /backpack is ready/,
  });
  const coordinators = [...cluster.stdout.matchAll(/coordinator \d+\s+(http:\S+)/g)].map(
    (m) => m[1] as string,
  );
  assert.equal(coordinators.length, 2, cluster.stdout);
  assert.equal((cluster.stdout.match(/node \d+ \(shard \d+\)/g) ?? []).length, 6, "6 nodes in 3 shards");
  const to = coordinators[0] as string;

  const put = await runBin("backpack", ["put", src, "--to", to, "--json"]);
  assert.equal(put.code, 0, put.stderr);
  const result = JSON.parse(put.stdout) as { uploaded: { key: string; shard: string }[]; failed: unknown[] };
  assert.deepEqual(result.failed, []);
  assert.deepEqual(result.uploaded.map((u) => u.key).sort(), [...files.keys()].sort());

  const readAll = async (via: string): Promise<void> => {
    for (const { key, shard } of result.uploaded) {
      const out = join(dir, "download.bin");
      const get = await runBin("backpack", ["get", `${shard}:${key}`, "-o", out, "--to", via]);
      assert.equal(get.code, 0, `${shard}:${key}: ${get.stderr}`);
      assert.ok((await readFile(out)).equals(files.get(key) as Buffer), `${key} reads back byte-exact`);
    }
  };
  await readAll(coordinators[1] as string);
  for (const { key, shard } of result.uploaded.filter((u) => u.key in types)) {
    const stat = await runBin("backpack", ["stat", `${shard}:${key}`, "--to", to, "--json"]);
    assert.equal(stat.code, 0, stat.stderr);
    assert.equal((JSON.parse(stat.stdout) as { contentType: string }).contentType, types[key], key);
    const res = await fetch(`${to}/${shard}:${key.split("/").map(encodeURIComponent).join("/")}`);
    assert.equal(res.headers.get("content-type"), types[key], `${key} is served with its type`);
    await res.arrayBuffer();
  }

  // Ctrl-C stops it cleanly; the next start finds every file.
  assert.equal(await cluster.kill("SIGINT"), 0, cluster.stderr);
  assert.match(cluster.stdout, /stopped/);
  await cluster.start();
  const again = [...cluster.stdout.matchAll(/coordinator \d+\s+(http:\S+)/g)].map((m) => m[1] as string);
  assert.match(cluster.stdout, /reusing the cluster/);
  await readAll(again[0] as string);

  const status = await runBin("backpack", ["status", "--to", again[0] as string, "--json"]);
  assert.equal(status.code, 0, status.stderr);
  const doc = JSON.parse(status.stdout) as { cluster: { shards: unknown[]; servers: unknown[] } };
  assert.equal(doc.cluster.shards.length, 3);
  assert.equal(doc.cluster.servers.length, 6);
});

/**
 * The original's model, as docs/http-api.md and the README state it: an upload of a name goes to a shard chosen
 * afresh; an earlier upload of that name on another shard stays readable at its own address until deleted.
 */
test("backpack dev: a name uploaded again is a new file at its own address; the old one stays until deleted", async (t) => {
  const dir = await tempDir(t);
  const cluster = await startProcess(t, {
    command: "backpack",
    args: ["dev", "--data", join(dir, "data"), "--port", "0", "--sync", "none"],
    ready: /backpack is ready/,
  });
  const to = /coordinator 1\s+(http:\S+)/.exec(cluster.stdout)?.[1] as string;
  const upload = async (body: string): Promise<string> => {
    const res = await fetch(`${to}/doc.txt`, { method: "PUT", body });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.endsWith("}\n"), "a JSON answer ends with a newline");
    return (JSON.parse(text) as { shard_id: string }).shard_id;
  };
  const read = async (shard: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(`${to}/${shard}:doc.txt`);
    return { status: res.status, text: await res.text() };
  };
  // Uploads of the same name until two landed on different shards (3 shards: a few tries at most).
  const first = await upload("version 1\n");
  let second = first;
  for (let i = 2; second === first; i++) {
    assert.ok(i < 100, "uploads spread over the shards");
    second = await upload(`version ${i}\n`);
  }
  const latest = (await read(second)).text;
  assert.match(latest, /^version \d+\n$/);
  const old = await read(first);
  assert.equal(old.status, 200, "the old address still answers");
  assert.notEqual(old.text, latest, "with the older version");
  // Replacing means deleting the old address.
  const rm = await runBin("backpack", ["rm", `${first}:doc.txt`, "--to", to]);
  assert.equal(rm.code, 0, rm.stderr);
  assert.equal((await read(first)).status, 404);
  assert.equal((await read(first)).text.endsWith("\n"), true, "the 404's JSON ends with a newline");
  assert.deepEqual(await read(second), { status: 200, text: latest });
  assert.equal(await cluster.kill("SIGTERM"), 0);
});

test("backpack dev: a taken port is a clear error, exit 1, before anything is created", async (t) => {
  const dir = await tempDir(t);
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  t.after(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const res = await runBin("backpack", ["dev", "--data", join(dir, "data"), "--port", String(port)]);
  assert.equal(res.code, 1);
  assert.match(res.stderr, new RegExp(`port 127\\.0\\.0\\.1:${port} is already in use`));
  await assert.rejects(readFile(join(dir, "data", "cluster.json")), { code: "ENOENT" });
});

test("backpack dev: wrong arguments print usage and exit 2", async () => {
  for (const args of [["--shards", "0"], ["--replicas", "x"], ["--sync", "sometimes"], ["--bogus"]]) {
    const res = await runBin("backpack", ["dev", ...args]);
    assert.equal(res.code, 2, `${args.join(" ")}: ${res.stderr}`);
    assert.match(res.stderr, /Usage: backpack dev/);
  }
});

test("client commands: clear errors when no cluster answers, and for bad addresses", async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const port = (blocker.address() as { port: number }).port;
  await new Promise<void>((resolve) => blocker.close(() => resolve()));
  const to = `http://127.0.0.1:${port}`;
  const status = await runBin("backpack", ["status", "--to", to]);
  assert.equal(status.code, 1);
  assert.match(status.stderr, /cannot reach the coordinator/);
  const get = await runBin("backpack", ["get", "no-colon", "--to", to]);
  assert.equal(get.code, 2);
  assert.match(get.stderr, /not of the form <shard>:<key>/);
  const put = await runBin("backpack", ["put", "/definitely/not/here", "--to", to]);
  assert.equal(put.code, 2);
  assert.match(put.stderr, /cannot read \/definitely\/not\/here/);
});
