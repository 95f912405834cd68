import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ChildHandle, runShell } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const exec = promisify(execFile);
const repo = fileURLToPath(new URL("../../../", import.meta.url));

/** The README's quick-start commands, exactly as written there. */
async function quickStartCommands(): Promise<string[]> {
  const readme = await readFile(join(repo, "README.md"), "utf8");
  const section = readme.split(/^## Quick start$/m)[1] ?? "";
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
  return block
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter(Boolean);
}

test("the README's quick start gives exactly two commands: npm start and npm test", async () => {
  assert.deepEqual(await quickStartCommands(), ["npm start", "npm test"]);
});

/**
 * A newcomer's check: a fresh clone of what is committed, the README's two commands run as written. The
 * inner `npm test` is narrowed with BACKPACK_TEST_FILTER (it would otherwise run this very test again); it
 * still installs, builds, lints and runs tests from scratch.
 */
test("a fresh clone: npm start serves uploads, npm test passes", { timeout: 15 * 60_000 }, async (t) => {
  const dir = await tempDir(t, "backpack-newcomer-");
  const clone = join(dir, "backpack");
  await exec("git", ["clone", "-q", repo, clone]);
  const [start, testCommand] = await quickStartCommands();
  assert.ok(start && testCommand);

  const cluster = new ChildHandle({
    command: "/bin/sh",
    args: ["-c", `exec ${start}`],
    cwd: clone,
    env: { BACKPACK_PORT: "0" },
    ready: /backpack is ready/,
    readyTimeoutMs: 8 * 60_000,
    group: true,
  });
  t.after(() => cluster.kill("SIGKILL"));
  await cluster.start();
  const to = /coordinator 1\s+(http:\S+)/.exec(cluster.stdout)?.[1];
  assert.ok(to, cluster.stdout);
  const put = await fetch(`${to}/hi.txt`, { method: "PUT", body: "hello, backpack!\n" });
  assert.equal(put.status, 200);
  const { shard_id } = (await put.json()) as { shard_id: string };
  const get = await fetch(`${to}/${shard_id}:hi.txt`);
  assert.equal(await get.text(), "hello, backpack!\n");
  // Ctrl-C reaches the whole process group; npm itself then ends by the signal, the cluster stops cleanly.
  const code = await cluster.kill("SIGINT");
  assert.ok(code === 0 || code === null, `npm start exited ${code}: ${cluster.stderr.slice(-2000)}`);
  await waitFor(() => cluster.stdout.includes("stopped"), { what: "the cluster to report it stopped" });

  const res = await runShell(testCommand, {
    cwd: clone,
    env: { BACKPACK_TEST_FILTER: "cli/docs,dev/layout" },
  });
  assert.equal(res.code, 0, res.stdout.slice(-3000) + res.stderr.slice(-3000));
  assert.match(res.stdout, /# pass [1-9]/);
  assert.match(res.stdout, /# fail 0/);
});
