import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { isRunning, runBin, startProcess, type ChildHandle } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { freePort, freeRange, portFree, waitFor } from "../helpers/wait.js";

interface View {
  self: string;
  checksum: string;
  tick: number;
  members: Array<{ id: string; status: string; meta: Record<string, string> }>;
  rings: string[][];
}

async function view(child: ChildHandle): Promise<View> {
  const res = await fetch(`${child.url}/ring`);
  return (await res.json()) as View;
}

const statusIn = (v: View, id: string): string | undefined => v.members.find((m) => m.id === id)?.status;

const FAST = ["--period-ms", "250", "--probe-timeout-ms", "150", "--hold-ms", "20"];

/** One ring-demo member process on `port`, with fast timers, joining through `seeds`. */
function member(
  t: TestContext,
  port: number,
  seeds: string,
  extra: string[],
  env?: Record<string, string>,
): Promise<ChildHandle> {
  return startProcess(t, {
    command: "backpack",
    args: ["ring-demo", "--member", String(port), "--seeds", seeds, ...extra, ...FAST],
    ...(env ? { env } : {}),
  });
}

void describe("ring member processes", () => {
  void it("agree that a SIGKILLed member is dead, take it back after a restart, refuse a wrong secret", async (t) => {
    const dir = await tempDir(t);
    const secretFile = join(dir, "secret");
    await writeFile(secretFile, "cluster-secret-for-the-ring-test\n");
    const wrongFile = join(dir, "wrong");
    await writeFile(wrongFile, "not-the-cluster-secret-at-all!!\n");
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const seeds = ports.map((p) => `127.0.0.1:${p}`).join(",");
    // Restarted by hand below: no neighbour restarts it first.
    const start = (port: number, secret = secretFile): Promise<ChildHandle> =>
      member(t, port, seeds, ["--secret-file", secret, "--no-respawn"]);
    const children = await Promise.all(ports.map((p) => start(p)));
    const ids = ports.map((p) => `127.0.0.1:${p}`);
    await waitFor(
      async () => {
        const views = await Promise.all(children.map(view));
        return views.every((v) => v.members.filter((m) => m.status === "alive").length === 4 && v.tick > 0);
      },
      { timeoutMs: 30_000, what: "four members alive and ticking everywhere" },
    );

    const victim = children[2] as ChildHandle;
    await victim.kill("SIGKILL");
    const survivors = children.filter((c) => c !== victim);
    await waitFor(
      async () =>
        (await Promise.all(survivors.map(view))).every((v) => statusIn(v, ids[2] as string) === "dead"),
      { timeoutMs: 30_000, what: "every survivor to report the killed member dead" },
    );
    const ticks = (await view(survivors[0] as ChildHandle)).tick;
    await waitFor(async () => (await view(survivors[0] as ChildHandle)).tick > ticks, {
      timeoutMs: 20_000,
      what: "the survivors to keep ticking",
    });

    await victim.start();
    await waitFor(
      async () => {
        const views = await Promise.all(children.map(view));
        return (
          views.every((v) => statusIn(v, ids[2] as string) === "alive") &&
          new Set(views.map((v) => v.checksum)).size === 1
        );
      },
      { timeoutMs: 30_000, what: "the restarted member to rejoin with equal views" },
    );

    // A member with another secret, given every address as seed, never gets into anyone's view.
    const intruderPort = await freePort();
    const intruder = await startProcess(t, {
      command: "backpack",
      args: [
        "ring-demo",
        "--member",
        String(intruderPort),
        "--seeds",
        seeds,
        "--secret-file",
        wrongFile,
        ...FAST,
      ],
    });
    await waitFor(
      async () =>
        (await view(intruder)).members.length === 1 && intruder.stderr.includes("ring connection refused"),
      {
        timeoutMs: 20_000,
        what: "the intruder refused",
      },
    );
    for (const v of await Promise.all(children.map(view))) {
      assert.equal(statusIn(v, `127.0.0.1:${intruderPort}`), undefined);
    }
  });

  void it("respawns: a member SIGKILLed is restarted by its ring neighbour and ticks again; two killed at once likewise", async (t) => {
    const ports = await Promise.all(Array.from({ length: 5 }, () => freePort()));
    const httpPorts = await Promise.all(ports.map(() => freePort()));
    const seeds = ports.map((p) => `127.0.0.1:${p}`).join(",");
    const ids = ports.map((p) => `127.0.0.1:${p}`);
    // Members a neighbour restarts are its children, not ours: they stop when this test process ends.
    const env = { BACKPACK_RING_DEMO_PARENT: String(process.pid) };
    const children = await Promise.all(
      ports.map((port, i) => member(t, port, seeds, ["--http-port", String(httpPorts[i])], env)),
    );
    const viewAt = async (i: number): Promise<View> =>
      (await (await fetch(`http://127.0.0.1:${httpPorts[i]}/ring`)).json()) as View;
    const pidOf = (v: View, id: string): string | undefined => v.members.find((m) => m.id === id)?.meta.pid;
    t.after(async () => {
      // The members stop the ones they restarted (SIGTERM); the rest are killed by startProcess.
      const v = await viewAt(0).catch(() => undefined);
      for (const m of v?.members ?? []) {
        try {
          process.kill(Number(m.meta.pid), "SIGTERM");
        } catch {
          // Gone already.
        }
      }
    });
    const allAlive = async (): Promise<View[] | undefined> => {
      const views = await Promise.all(ports.map((_, i) => viewAt(i)));
      return views.every((v) => v.members.filter((m) => m.status === "alive").length === 5)
        ? views
        : undefined;
    };
    const before = await waitFor(allAlive, { timeoutMs: 30_000, what: "five members alive everywhere" });

    const victim = 1;
    const oldPid = pidOf(before[0]!, ids[victim]!);
    assert.equal(await children[victim]!.kill("SIGKILL"), null);
    assert.equal(children[victim]!.proc?.signalCode, "SIGKILL");
    await waitFor(
      async () => {
        const views = await allAlive().catch(() => undefined);
        return views?.every((v) => pidOf(v, ids[victim]!) !== oldPid);
      },
      {
        timeoutMs: 60_000,
        what: "the killed member restarted by a neighbour (a new pid) and alive everywhere",
      },
    );
    const tick = (await viewAt(victim)).tick;
    await waitFor(async () => (await viewAt(victim)).tick > tick, {
      timeoutMs: 20_000,
      what: "it ticks again",
    });

    // Two neighbours on ring 0 killed at once: the live member before them restarts both.
    const order = (await viewAt(0)).rings[0]!;
    const a = ids.indexOf(order[1]!);
    const b = ids.indexOf(order[2]!);
    const v0 = await viewAt(0);
    const pids = [a, b].map((i) => Number(pidOf(v0, ids[i]!)));
    for (const pid of pids) process.kill(pid, "SIGKILL");
    await waitFor(
      async () => {
        const views = await allAlive().catch(() => undefined);
        return views?.every((v) => [a, b].every((i, k) => Number(pidOf(v, ids[i]!)) !== pids[k]));
      },
      { timeoutMs: 60_000, what: "both killed members restarted and alive everywhere" },
    );
  });

  void it("runs the demo: several members tick, Ctrl-C (SIGTERM) stops them all; bad arguments exit 2", async (t) => {
    const base = await freeRange(3);
    const demo = await startProcess(t, {
      command: "backpack",
      args: ["ring-demo", "--ports", `${base}-${base + 2}`, ...FAST],
    });
    await waitFor(
      () => [0, 1, 2].every((i) => new RegExp(`PORT: ${base + i} TICK: \\d+ LAP: \\d`).test(demo.stdout)),
      {
        timeoutMs: 30_000,
        what: "every member of the demo ticking with a lap time",
      },
    );
    assert.equal(await demo.kill("SIGTERM"), 0);
    assert.doesNotMatch(demo.stdout, /EXITED/);
    for (let i = 0; i < 3; i++) assert.equal(await portFree(base + i), true, `port ${base + i} released`);

    const bad = await runBin("backpack", ["ring-demo", "--ports", "9-3"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--ports/);
  });
});

/** Each member's PID and status URL, as the demo prints them. */
function membersOf(stdout: string): Map<number, { pid: number; status: string }> {
  const out = new Map<number, { pid: number; status: string }>();
  for (const m of stdout.matchAll(/^PORT: (\d+) PID: (\d+) STATUS: (\S+)$/gm)) {
    out.set(Number(m[1]), { pid: Number(m[2]), status: m[3] as string });
  }
  return out;
}

void describe("the ring demo's members end with it", () => {
  void it("prints each member's PID and status URL; stopped, it leaves no member running, one restarted by hand included", async (t) => {
    const base = await freeRange(3);
    const ports = `${base}-${base + 2}`;
    const demo = await startProcess(t, {
      command: "backpack",
      args: ["ring-demo", "--ports", ports, ...FAST],
    });
    await waitFor(() => membersOf(demo.stdout).size === 3, { what: "every member's PID and status URL" });
    const members = membersOf(demo.stdout);
    for (const [port, m] of members) {
      assert.ok(m.pid !== demo.pid && isRunning(m.pid), `member ${port} runs as its own process`);
      const v = (await (await fetch(m.status)).json()) as View;
      assert.equal(v.self, `127.0.0.1:${port}`, "the status URL is that member's view of the ring");
    }

    // The member on the middle port, killed as the demo says (kill -9 <pid>) and restarted by hand.
    const victim = members.get(base + 1)!;
    process.kill(victim.pid, "SIGKILL");
    await waitFor(() => !isRunning(victim.pid), { what: "the killed member gone" });
    const byHand = await startProcess(t, {
      command: "backpack",
      args: ["ring-demo", "--member", String(base + 1), "--ports", ports, ...FAST],
      ready: /PID: \d+ STATUS: /,
    });
    await waitFor(() => /TICK: \d+ LAP: \d.*MEMBERS: 3 alive/.test(byHand.stdout), {
      timeoutMs: 30_000,
      what: "the member restarted by hand ticking with the others",
    });

    assert.equal(await demo.kill("SIGTERM"), 0);
    assert.equal(await byHand.waitExit(), 0, "the member restarted by hand stopped by itself");
    assert.match(byHand.stdout, /STOPPING: every other member left/);
    for (const [port, m] of members) assert.equal(isRunning(m.pid), false, `member ${port} stopped`);
    for (let i = 0; i < 3; i++) assert.equal(await portFree(base + i), true, `port ${base + i} released`);
  });

  void it("a demo killed with SIGKILL takes its members with it", async (t) => {
    const base = await freeRange(3);
    const demo = await startProcess(t, {
      command: "backpack",
      args: ["ring-demo", "--ports", `${base}-${base + 2}`, ...FAST],
    });
    await waitFor(() => membersOf(demo.stdout).size === 3, { what: "every member started" });
    const pids = [...membersOf(demo.stdout).values()].map((m) => m.pid);
    // Whatever happens to the test, no member outlives it.
    t.after(() => pids.forEach((pid) => isRunning(pid) && process.kill(pid, "SIGKILL")));
    assert.equal(await demo.kill("SIGKILL"), null);
    assert.equal(demo.running, false);
    await waitFor(() => pids.every((pid) => !isRunning(pid)), {
      timeoutMs: 20_000,
      what: "every member gone",
    });
  });
});
