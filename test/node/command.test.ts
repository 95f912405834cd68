import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { runBin, startProcess } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { http } from "./node-harness.js";

void test("wrong or missing arguments: usage on stderr, exit 2, no data dir created", async (t) => {
  const base = await tempDir(t);
  const dir = join(base, "data");
  const cases: string[][] = [
    [dir],
    [dir, "127.0.0.1"],
    [dir, "127.0.0.1", "port"],
    [dir, "127.0.0.1", "70000"],
    [dir, "127.0.0.1", "-1"],
    [dir, "127.0.0.1", "0", "--sync", "sometimes"],
    [dir, "127.0.0.1", "0", "--max-body", "lots"],
    [dir, "127.0.0.1", "0", "--volume-size", "0"],
    [dir, "127.0.0.1", "0", "--compact-ratio", "2"],
    [dir, "127.0.0.1", "0", "--body-timeout", "soon"],
    [dir, "127.0.0.1", "0", "--max-inflight-uploads", "none"],
    [dir, "127.0.0.1", "0", "--token-file", join(base, "missing-token")],
    [dir, "127.0.0.1", "0", "--frobnicate"],
    [dir, "127.0.0.1", "0", "redis-host", "6379", "extra"],
    ["node", dir],
  ];
  await Promise.all(
    cases.map(async (args) => {
      const r = await runBin("backpack", args);
      assert.equal(r.code, 2, `${args.join(" ")}\n${r.stderr}`);
      assert.match(r.stderr, /Usage: backpack/, args.join(" "));
      assert.equal(r.stdout, "");
    }),
  );
  assert.equal(existsSync(dir), false, "nothing created");
  const empty = join(base, "empty-token");
  await writeFile(empty, "\n");
  const r = await runBin("backpack", [dir, "127.0.0.1", "0", "--token-file", empty]);
  assert.equal(r.code, 2);
  assert.equal(existsSync(dir), false);
});

void test("--help prints the usage with the original's form and exits 0", async () => {
  for (const args of [
    ["node", "--help"],
    ["node", "-h"],
  ]) {
    const r = await runBin("backpack", args);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: backpack node <data-dir> <host> <port>/);
    assert.match(r.stdout, /--sync/);
    assert.match(r.stdout, /--token-file/);
  }
});

void test("the original's positional form runs a node; Redis arguments are ignored with a notice; SIGTERM stops it (exit 0)", async (t) => {
  const dir = join(await tempDir(t), "data");
  const child = await startProcess(t, {
    command: "backpack",
    args: [dir, "127.0.0.1", "0", "127.0.0.1", "6379"],
  });
  assert.match(child.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(child.stderr, /Redis arguments are ignored/);
  assert.equal((await http(child.url, "/hello.txt", { method: "PUT", body: "hi" })).status, 201);
  assert.equal((await http(child.url, "/hello.txt")).text, "hi");
  assert.equal(await child.kill("SIGTERM"), 0);
  assert.match(child.stderr, /"msg":"stopped"/);
  // Started again on the same dir: the file is there.
  const again = await startProcess(t, { command: "backpack", args: ["node", dir, "127.0.0.1", "0"] });
  assert.equal((await http(again.url, "/hello.txt")).text, "hi");
  assert.doesNotMatch(again.stderr, /Redis/);
});

void test("the write token comes from --token-file or BACKPACK_WRITE_TOKEN, never from argv", async (t) => {
  const base = await tempDir(t);
  const tokenFile = join(base, "token");
  await writeFile(tokenFile, "file-token\n");
  const fromFile = await startProcess(t, {
    command: "backpack",
    args: ["node", join(base, "a"), "127.0.0.1", "0", "--token-file", tokenFile],
  });
  assert.equal((await http(fromFile.url, "/x", { method: "PUT", body: "1" })).status, 401);
  const ok = await http(fromFile.url, "/x", {
    method: "PUT",
    body: "1",
    headers: { authorization: "Bearer file-token" },
  });
  assert.equal(ok.status, 201);
  assert.doesNotMatch(fromFile.stderr, /file-token/, "the token is never logged");
  const fromEnv = await startProcess(t, {
    command: "backpack",
    args: ["node", join(base, "b"), "127.0.0.1", "0"],
    env: { BACKPACK_WRITE_TOKEN: "env-token" },
  });
  assert.equal((await http(fromEnv.url, "/x", { method: "PUT", body: "1" })).status, 401);
  const ok2 = await http(fromEnv.url, "/x", {
    method: "PUT",
    body: "1",
    headers: { authorization: "Bearer env-token" },
  });
  assert.equal(ok2.status, 201);
});

void test("a port in use: a clear message, exit 1", async (t) => {
  const base = await tempDir(t);
  const first = await startProcess(t, {
    command: "backpack",
    args: ["node", join(base, "a"), "127.0.0.1", "0"],
  });
  const port = new URL(first.url).port;
  const r = await runBin("backpack", ["node", join(base, "b"), "127.0.0.1", port]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /already in use/);
});
