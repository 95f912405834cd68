import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { openClusterMap } from "../../src/cluster/open.js";
import { openQueue } from "../../src/queue/open.js";
import { runBin, startProcess } from "../helpers/process.js";
import { startRedis } from "../helpers/redis.js";
import { tempDir } from "../helpers/tmp.js";
import { copyTask } from "./fixture.js";

void test("replicator: wrong arguments print the usage and exit 2; --help exits 0", async () => {
  for (const args of [[], ["file:/x"], ["file:/x", "/", "zero"], ["file:/x", "/", "--listen", "nope"]]) {
    const r = await runBin("backpack-replicator", args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /Usage: backpack-replicator <zk> <root> \[<concurrency>\]/);
  }
  const help = await runBin("backpack", ["replicator", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit codes/);
});

void test("replicator: a map without queue settings is refused with exit 1", async (t) => {
  const file = join(await tempDir(t), "cluster.json");
  const r = await runBin("backpack-replicator", [`file:${file}`, "/"]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /backpack-coordinator-init/);
});

/** The niceness of every thread of a process, from /proc (Linux). */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });
}

void test(
  "replicator: runs at a lower CPU priority (niceness 10, every thread); --nice 0 and --respawn-neighbours keep it as started",
  { skip: process.platform !== "linux" && "thread niceness is read from /proc (Linux)" },
  async (t) => {
    const dir = await tempDir(t);
    const file = join(dir, "cluster.json");
    const map = openClusterMap({ file });
    await map.start();
    await map.init({ key: `file:${join(dir, "q")}`, servers: [] });
    await map.stop();
    const secret = join(dir, "ring-secret");
    writeFileSync(secret, "a ring secret of enough length\n", { mode: 0o600 });
    const cases: [string[], number][] = [
      [[], 10],
      [["--nice", "15"], 15],
      [["--nice", "0"], 0],
      [["--respawn-neighbours", "--ring-secret-file", secret], 0],
    ];
    for (const [args, expected] of cases) {
      const r = await startProcess(t, {
        command: "backpack-replicator",
        args: [`file:${file}`, "/", ...args],
      });
      const line = r.stderr.split("\n").find((l) => l.includes('"listening"')) ?? "";
      const threads = threadNiceness(r.pid as number);
      assert.equal(await r.kill("SIGTERM"), 0);
      assert.ok(threads.length > 1, "the process has its threads");
      assert.deepEqual(new Set(threads), new Set([expected]), `${args.join(" ")}: ${threads.join(",")}`);
      assert.equal((JSON.parse(line) as { nice?: number }).nice, expected);
    }
    const wrong = await runBin("backpack-replicator", [`file:${file}`, "/", "--nice", "20"]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--nice must be 0-19, got 20/);
  },
);

void test("queue status, dead-letters and replay against a Redis queue", async (t) => {
  const redis = await startRedis(t);
  const file = join(await tempDir(t), "cluster.json");
  const settings = { key: "cmd-test", servers: [redis.endpoint] };
  const map = openClusterMap({ file });
  await map.start();
  await map.init(settings);
  await map.stop();
  const q = await openQueue({ settings });
  t.after(() => q.stop());
  await q.push([copyTask("a.bin", "0a0b0c0d", 1, ["1"], "2"), copyTask("b.bin", "0a0b0c0d", 1, ["1"], "2")]);
  const leased = await q.lease(2, 60_000);
  for (const l of leased) await q.fail(l.id, "gave up", { fatal: true });

  const mapArgs = [`file:${file}`, "/"];
  const status = await runBin("backpack", ["queue", "status", ...mapArgs]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(
    status.stdout,
    /^depth: 0\ndue: 0\nleased: 0\nwaiting for an unreachable node: 0\noldest task age: 0 ms\ndead letters: 2\nservers: 127\.0\.0\.1:\d+ up\n$/,
  );
  const sj = await runBin("backpack", ["queue", "status", ...mapArgs, "--json"]);
  assert.equal((JSON.parse(sj.stdout) as { deadLetters: number }).deadLetters, 2);

  const dl = await runBin("backpack", ["queue", "dead-letters", ...mapArgs, "--json"]);
  assert.equal(dl.code, 0, dl.stderr);
  const letters = JSON.parse(dl.stdout) as { id: string; reason: string }[];
  assert.deepEqual(
    letters.map((d) => d.reason),
    ["gave up", "gave up"],
  );
  const text = await runBin("backpack", ["queue", "dead-letters", ...mapArgs]);
  assert.match(text.stdout, /attempts=1 gave up\n {2}\{"op":"copy"/);

  const none = await runBin("backpack", ["queue", "replay", ...mapArgs]);
  assert.equal(none.code, 2, "replay needs ids or --all");
  const one = await runBin("backpack", ["queue", "replay", ...mapArgs, letters[0]?.id ?? ""]);
  assert.equal(one.stdout, "replayed 1 task(s)\n");
  const all = await runBin("backpack", ["queue", "replay", ...mapArgs, "--all", "--json"]);
  assert.deepEqual(JSON.parse(all.stdout), { replayed: 1 });
  assert.equal((await q.stats()).depth, 2);
  const empty = await runBin("backpack", ["queue", "dead-letters", ...mapArgs]);
  assert.equal(empty.stdout, "no dead letters\n");
});
