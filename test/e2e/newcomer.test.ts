import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ChildHandle, descendants, isRunning, runShell } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { freeRange, waitFor } from "../helpers/wait.js";

const exec = promisify(execFile);
const repo = fileURLToPath(new URL("../../../", import.meta.url));
const pkg = JSON.parse(await readFile(join(repo, "package.json"), "utf8")) as { version: string };

/** The commands of the first ```sh block of a README section, exactly as written there (comments dropped). */
async function readmeCommands(section: string): Promise<string[]> {
  const readme = await readFile(join(repo, "README.md"), "utf8");
  const text = readme.split(new RegExp(`^## ${section}$`, "m"))[1]?.split(/^## /m)[0] ?? "";
  const block = /```sh\n([\s\S]*?)```/.exec(text)?.[1] ?? "";
  return block
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter(Boolean);
}

test("the README's quick start gives exactly two commands: npm start and npm test", async () => {
  assert.deepEqual(await readmeCommands("Quick start"), ["npm start", "npm test"]);
});

/** `npm start` in `dir`, as a terminal runs it: npm's own PID, in a process group of its own. */
function npmStart(t: TestContext, dir: string, command: string): ChildHandle {
  const cluster = new ChildHandle({
    command: "/bin/sh",
    args: ["-c", `exec ${command}`],
    cwd: dir,
    env: { BACKPACK_PORT: "0" },
    ready: /backpack is ready/,
    readyTimeoutMs: 8 * 60_000,
    group: true,
  });
  t.after(() => cluster.kill("SIGKILL"));
  return cluster;
}

/** The URL of every service `npm start` lists: coordinators, the replicator, the nodes. */
function serviceUrls(stdout: string): string[] {
  return [
    ...stdout.matchAll(/^ {2}(?:coordinator \d+|replicator|node \d+ \(shard \d+\)) +(http:\S+)$/gm),
  ].map((m) => m[1] as string);
}

/**
 * Sends `signal` to the PID of `npm start` alone (as `kill <pid>` or a process manager does, not to its group)
 * and checks that npm, the cluster under it and every service stop: exit 0, no process left, ports closed.
 */
async function stopByPid(cluster: ChildHandle, signal: NodeJS.Signals, urls: string[]): Promise<void> {
  const pid = cluster.pid;
  assert.ok(pid !== undefined);
  assert.equal(urls.length, 9, "2 coordinators, a replicator and 6 nodes");
  const below = descendants(pid);
  assert.ok(below.length > 0, "npm start runs the cluster in a process below it");
  process.kill(pid, signal);
  assert.equal(await cluster.waitExit(), 0, `npm start after ${signal}: ${cluster.stderr.slice(-2000)}`);
  assert.match(cluster.stdout, /stopped\n/);
  await waitFor(() => below.every((p) => !isRunning(p)), {
    what: `every process under npm gone after ${signal}`,
  });
  for (const url of urls) await assert.rejects(fetch(`${url}/healthz`), `${url} no longer answers`);
}

/**
 * A newcomer's first hour on a fresh clone of what is committed: the README's commands run as written
 * (`npm start`, its walkthrough, `npm test`), `npm start` stopped by signals sent to its PID, the commands
 * packed and installed as a user installs them, and the ring demo. The inner `npm test` is narrowed with
 * BACKPACK_TEST_FILTER (it would otherwise run this very test again); it still installs, builds, lints and
 * runs tests from scratch.
 */
test("a fresh clone, as a newcomer uses it", { timeout: 25 * 60_000 }, async (t) => {
  const dir = await tempDir(t, "backpack-newcomer-");
  const clone = join(dir, "backpack");
  await exec("git", ["clone", "-q", repo, clone]);
  const [start, testCommand] = await readmeCommands("Quick start");
  assert.ok(start && testCommand);

  await t.test("npm start, then the README's walkthrough word for word", async (t) => {
    const cluster = await npmStart(t, clone, start).start();
    const urls = serviceUrls(cluster.stdout);
    const to = /coordinator 1\s+(http:\S+)/.exec(cluster.stdout)?.[1];
    assert.ok(to, cluster.stdout);
    const walkthrough = await readmeCommands("Walkthrough");
    assert.ok(walkthrough.length >= 5, walkthrough.join("\n"));
    // The README's addresses with this run's: its coordinator (port 0 here) and the shards the uploads answered.
    const shards: Record<string, string> = {};
    for (const written of walkthrough) {
      const line: string = written
        .replaceAll("http://127.0.0.1:12001", to)
        .replace(
          /\b\d+:(hi\.txt|hello\.txt)\b/g,
          (_: string, name: string): string => `${shards[name] ?? "?"}:${name}`,
        );
      const res = await runShell(line, { cwd: clone, env: { BACKPACK_URL: to }, timeoutMs: 120_000 });
      assert.equal(res.code, 0, `${line}\n${res.stdout}${res.stderr}`);
      if (/curl -X PUT .*\/hi\.txt/.test(line)) {
        const m = /^\{"shard_id":"(\d+)"\}\n$/.exec(res.stdout);
        assert.ok(m, `the upload answers {"shard_id":...} and a newline: ${JSON.stringify(res.stdout)}`);
        shards["hi.txt"] = m[1] as string;
      } else if (/^curl .*:hi\.txt$/.test(line)) {
        assert.equal(res.stdout, "hello, backpack!\n", line);
      } else if (/backpack put .*hello\.txt/.test(line)) {
        const m = /^(\d+):hello\.txt {2}\S+ {2}hello\.txt$/m.exec(res.stdout);
        assert.ok(m, `put prints the address of each file: ${res.stdout}`);
        shards["hello.txt"] = m[1] as string;
      } else if (/backpack stat /.test(line)) {
        assert.match(res.stdout, /content type +text\/plain/, "the type from the file's name");
      } else if (/backpack status/.test(line)) {
        assert.match(res.stdout, /3 of 3 shards writable/);
      }
    }
    assert.deepEqual(
      Object.keys(shards).sort(),
      ["hello.txt", "hi.txt"],
      "the walkthrough uploads and reads",
    );

    // SIGTERM to npm's PID stops every part; the data is kept: a new start serves the file again.
    await stopByPid(cluster, "SIGTERM", urls);
    await cluster.start();
    const again = /coordinator 1\s+(http:\S+)/.exec(cluster.stdout)?.[1] as string;
    const get = await fetch(`${again}/${shards["hi.txt"]}:hi.txt`);
    assert.equal(await get.text(), "hello, backpack!\n", "kept across the stop");
    await stopByPid(cluster, "SIGINT", serviceUrls(cluster.stdout));
  });

  await t.test("npm test passes", async () => {
    const res = await runShell(testCommand, {
      cwd: clone,
      env: { BACKPACK_TEST_FILTER: "cli/docs,dev/layout" },
    });
    assert.equal(res.code, 0, res.stdout.slice(-3000) + res.stderr.slice(-3000));
    assert.match(res.stdout, /# pass [1-9]/);
    assert.match(res.stdout, /# fail 0/);
  });

  await t.test(
    "npm pack ships the commands: installed from the tarball, backpack --version runs",
    async () => {
      // Nothing built beforehand: packing builds (the prepare script).
      await rm(join(clone, "dist"), { recursive: true, force: true });
      const packed = join(dir, "packed");
      await mkdir(packed);
      const pack = await runShell(`npm pack --pack-destination ${packed}`, { cwd: clone });
      assert.equal(pack.code, 0, pack.stderr.slice(-3000));
      const [tarball] = (await readdir(packed)).filter((f) => f.endsWith(".tgz"));
      assert.ok(tarball, "a tarball");
      const prefix = join(dir, "prefix");
      const install = await runShell(
        `npm install -g --prefix ${prefix} ${join(packed, tarball)} --prefer-offline --no-audit --no-fund`,
        { cwd: dir },
      );
      assert.equal(install.code, 0, install.stderr.slice(-3000));
      const version = await runShell(`${join(prefix, "bin", "backpack")} --version`, { cwd: dir });
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout, `backpack ${pkg.version}\n`);
      const help = await runShell(`${join(prefix, "bin", "backpack-coordinator")} --help`, { cwd: dir });
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: backpack-coordinator <zk> <root> <host> <port>/);
    },
  );

  await t.test(
    "npm run ring-demo prints each member's PID and status URL; SIGTERM to npm's PID ends them all",
    async (t) => {
      const first = await freeRange(3);
      const ports = `${first}-${first + 2}`;
      const demo = new ChildHandle({
        command: "/bin/sh",
        args: [
          "-c",
          `exec npm run ring-demo -- --ports ${ports} --period-ms 250 --probe-timeout-ms 150 --hold-ms 20`,
        ],
        cwd: clone,
        ready: "none",
        group: true,
      });
      t.after(() => demo.kill("SIGKILL"));
      await demo.start();
      const memberLines = (): RegExpExecArray[] => [
        ...demo.stdout.matchAll(/^PORT: \d+ PID: (\d+) STATUS: (\S+)$/gm),
      ];
      await waitFor(() => memberLines().length === 3, {
        timeoutMs: 5 * 60_000,
        what: "every member's PID and status URL",
      });
      const members = memberLines();
      for (const m of members) {
        assert.equal((await fetch(m[2] as string)).status, 200, `${m[2]} answers`);
      }
      const pids = members.map((m) => Number(m[1]));
      process.kill(demo.pid as number, "SIGTERM");
      assert.equal(await demo.waitExit(), 0, demo.stderr.slice(-2000));
      await waitFor(() => pids.every((p) => !isRunning(p)), { what: "every member of the demo gone" });
    },
  );
});
