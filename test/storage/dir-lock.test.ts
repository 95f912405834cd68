import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { open, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { request } from "undici";
import { lockDir, NATIVE_LOCKER } from "../../src/storage/dir-lock.js";
import { openStore } from "../../src/storage/store.js";
import { binPath, startProcess, type ChildHandle } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { capturingLogger, readAll, storeFor } from "./helpers.js";

const LINUX = process.platform === "linux";
const IN_USE =
  /is in use by another process \((?:pid (\d+) per its LOCK file|its LOCK file names no pid yet)\)/;

/** The `listening` log line of a backpack node (its url and the pid of the process that logged it). */
function listening(stderr: string): { url: string; pid: number } | undefined {
  for (const line of stderr.split("\n")) {
    if (!line.startsWith("{")) continue;
    const rec = JSON.parse(line) as { msg?: string; url?: string; pid?: number };
    if (rec.msg === "listening" && typeof rec.url === "string" && typeof rec.pid === "number") {
      return { url: rec.url, pid: rec.pid };
    }
  }
  return undefined;
}

/**
 * Whether a killed process is done with its files: gone, or a zombie with no thread left but its first. A
 * multi-threaded process shows `Z` once its main thread has exited, while its other threads may still be
 * exiting with the fd table (and so the lock); a parent's wait returns only after all of them.
 */
async function dead(pid: number): Promise<{ zombie: boolean } | undefined> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, "utf8");
  } catch {
    return { zombie: false };
  }
  const zombie = /^State:\s+Z/m.test(status);
  return zombie && /^Threads:\s+1$/m.test(status) ? { zombie } : undefined;
}

/** A backpack node on `dir` started by a shell (`then` is what the shell does after starting it). */
async function nodeUnderShell(
  t: TestContext,
  dir: string,
  then: string,
): Promise<{ shell: ChildHandle; node: { url: string; pid: number } }> {
  const shell = await startProcess(t, {
    command: "/bin/sh",
    args: [
      "-c",
      `"$1" "$2" node "$3" 127.0.0.1 0 & ${then}`,
      "sh",
      process.execPath,
      binPath("backpack"),
      dir,
    ],
    group: true, // the after-test kill reaches the node too
  });
  const node = listening(shell.stderr);
  assert.ok(node);
  assert.notEqual(node.pid, shell.pid);
  return { shell, node };
}

async function put(url: string, key: string, body: string): Promise<void> {
  const res = await request(`${url}/${key}`, { method: "PUT", body });
  await res.body.dump();
  assert.equal(res.statusCode, 201);
}

void test(
  "the native lock loads here (linux-x64 ships a prebuilt binary)",
  { skip: LINUX ? false : "the kernel lock and these process checks are Linux-specific" },
  () => {
    assert.ok(NATIVE_LOCKER);
  },
);

void test(
  "a node SIGKILLed under a parent that never reaps it (a zombie) does not keep the dir",
  { skip: LINUX ? false : "the kernel lock and these process checks are Linux-specific" },
  async (t) => {
    const dir = join(await tempDir(t), "data");
    // `exec sleep`: the node's parent becomes a process that never waits for its children.
    const { node } = await nodeUnderShell(t, dir, "exec sleep 1000");
    await put(node.url, "k", "before the kill");
    process.kill(node.pid, "SIGKILL");
    const end = await waitFor(() => dead(node.pid), { what: "the killed node to be done" });
    assert.ok(end.zombie, "its parent does not reap it");
    // The pid still answers signal 0: a pid check would take the dir for in use.
    assert.doesNotThrow(() => process.kill(node.pid, 0));
    assert.match(await readFile(join(dir, "LOCK"), "utf8"), new RegExp(`^pid ${node.pid}$`, "m"));

    const store = await storeFor(t, dir);
    assert.equal((await readAll(store, "k")).toString(), "before the kill");
  },
);

void test(
  "a node SIGKILLed together with the shell that started it does not keep the dir",
  { skip: LINUX ? false : "the kernel lock and these process checks are Linux-specific" },
  async (t) => {
    const dir = join(await tempDir(t), "data");
    const { shell, node } = await nodeUnderShell(t, dir, "wait");
    await put(node.url, "k", "before the kill");
    assert.equal(await shell.kill("SIGKILL"), null); // the whole group: the shell and the node
    assert.equal(shell.proc?.signalCode, "SIGKILL");
    // Orphaned, the node is reaped by init, or stays a zombie where init does not reap.
    await waitFor(() => dead(node.pid), { what: "the node to be done" });

    const store = await storeFor(t, dir);
    assert.equal((await readAll(store, "k")).toString(), "before the kill");
  },
);

void test("a LOCK file naming a live unrelated process does not stop an open", async (t) => {
  const dir = await tempDir(t);
  const other = await startProcess(t, { command: "/bin/sh", args: ["-c", "exec sleep 1000"], ready: "none" });
  const pid = other.pid;
  assert.ok(pid !== undefined);
  assert.doesNotThrow(() => process.kill(pid, 0));
  // As a host or container restart leaves it: the old pid now belongs to someone else.
  await writeFile(join(dir, "LOCK"), `pid ${pid}\nhost elsewhere\nstarted 2020-01-01T00:00:00.000Z\n`);
  const store = await storeFor(t, dir);
  await store.close();
  // The file's older form, a bare pid (here the test runner's own parent).
  await writeFile(join(dir, "LOCK"), `${process.ppid}\n`);
  await storeFor(t, dir);
  const text = await readFile(join(dir, "LOCK"), "utf8");
  assert.match(text, new RegExp(`^pid ${process.pid}\\nhost .+\\nstarted \\d{4}-.+Z\\n$`));
});

void test("two nodes started at the same moment on one dir: one serves, the other exits UNAVAILABLE", async (t) => {
  const dir = join(await tempDir(t), "data");
  const options = { command: "backpack", args: ["node", dir, "127.0.0.1", "0"], ready: "none" } as const;
  const [a, b] = await Promise.all([startProcess(t, options), startProcess(t, options)]);
  const outcome = (p: ChildHandle): "serving" | "exited" | undefined =>
    listening(p.stderr) ? "serving" : p.running ? undefined : "exited";
  await waitFor(() => outcome(a) && outcome(b), { timeoutMs: 20_000, what: "both nodes to serve or exit" });
  const survivor = outcome(a) === "serving" ? a : b;
  const loser = survivor === a ? b : a;
  assert.equal(outcome(survivor), "serving");
  assert.equal(outcome(loser), "exited", `both serve:\n${a.stderr}\n${b.stderr}`);
  assert.equal(await loser.waitExit(), 1);
  const m = IN_USE.exec(loser.stderr);
  assert.ok(m, loser.stderr);
  if (m[1] !== undefined) assert.equal(Number(m[1]), survivor.pid);

  // The survivor keeps its lock and serves on after the loser's attempt.
  const { url } = listening(survivor.stderr)!;
  await put(url, "k", "still here");
  const res = await request(`${url}/k`);
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), "still here");
  await assert.rejects(openStore({ dir }), (err: Error & { code?: string }) => {
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(err.message, `${dir} is in use by another process (pid ${survivor.pid} per its LOCK file)`);
    return true;
  });
});

void test("processes released at one moment: exactly one opens the store", async (t) => {
  const dir = await tempDir(t);
  const storeUrl = new URL("../../src/storage/store.js", import.meta.url).href;
  // Each imports the store, says ready, and opens the dir when a line arrives on stdin (all get it at once).
  const script = `
    const { openStore } = await import(process.argv[1]);
    process.stdout.write("ready\\n");
    await new Promise((r) => process.stdin.once("data", r));
    try {
      const store = await openStore({ dir: process.argv[2] });
      await store.put("k", Buffer.from("x"), { maxBytes: 1 });
      process.stdout.write("opened\\n");
      process.stdin.once("end", () => void store.close());
    } catch (err) {
      process.stdout.write("refused " + err.code + ": " + err.message + "\\n");
      process.exitCode = 1;
    }`;
  const procs = Array.from({ length: 4 }, () => {
    const p = spawn(process.execPath, ["--input-type=module", "-e", script, storeUrl, dir], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    t.after(async () => {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill("SIGKILL");
        await once(p, "exit");
      }
    });
    let out = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    return { p, out: () => out };
  });
  await waitFor(() => procs.every((c) => c.out().includes("ready")), { what: "every process to be ready" });
  for (const c of procs) c.p.stdin.write("go\n");
  await waitFor(() => procs.every((c) => /opened|refused/.test(c.out())), { what: "every open to finish" });
  const opened = procs.filter((c) => c.out().includes("opened"));
  assert.equal(opened.length, 1, procs.map((c) => c.out()).join(""));
  for (const c of procs.filter((x) => x !== opened[0])) {
    assert.match(c.out(), /^ready\nrefused UNAVAILABLE: /);
    assert.match(c.out(), IN_USE);
  }
  // The survivor closes cleanly when told to, and the dir opens again.
  opened[0]!.p.stdin.end();
  await once(opened[0]!.p, "exit");
  assert.equal(opened[0]!.p.exitCode, 0);
  await storeFor(t, dir);
});

void test("a second open in the same process is refused; after close() the dir opens again", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir);
  await assert.rejects(openStore({ dir }), {
    code: "UNAVAILABLE",
    message: `${dir} is already open in this process`,
  });
  if (NATIVE_LOCKER) {
    // The kernel holds the lock, not only this process's bookkeeping: another descriptor cannot take it.
    const other = await open(join(dir, "LOCK"), "r+");
    t.after(() => other.close());
    assert.equal(NATIVE_LOCKER.tryLock(other.fd), false);
    await store.close();
    // The file stays (unlinking a locked file would let two processes lock two inodes of one name).
    assert.ok((await stat(join(dir, "LOCK"))).isFile());
    assert.equal(NATIVE_LOCKER.tryLock(other.fd), true);
    NATIVE_LOCKER.unlock(other.fd);
  } else {
    await store.close();
  }
  // Two opens racing in this process: exactly one gets the dir.
  const results = await Promise.allSettled([openStore({ dir }), openStore({ dir })]);
  const opened = results.filter((r) => r.status === "fulfilled");
  assert.equal(opened.length, 1);
  t.after(() => opened[0]!.value.close());
  const refused = results.find((r) => r.status === "rejected");
  assert.equal((refused?.reason as { code?: string }).code, "UNAVAILABLE");
});

void test("without the native lock: a warning, then the pid check of the LOCK file", async (t) => {
  const dir = await tempDir(t);
  const { log, lines } = capturingLogger();
  const other = await startProcess(t, { command: "/bin/sh", args: ["-c", "exec sleep 1000"], ready: "none" });
  await writeFile(join(dir, "LOCK"), `pid ${other.pid}\n`);
  await assert.rejects(lockDir(dir, { log, locker: null }), {
    code: "UNAVAILABLE",
    message: `${dir} is in use by another process (pid ${other.pid} per its LOCK file)`,
  });
  assert.equal(lines.filter((l) => l.level === 40).length, 1);
  assert.match(String(lines[0]?.msg), /falls back to a pid check/);

  await other.kill("SIGKILL"); // exited and reaped: its pid names no process now
  const release = await lockDir(dir, { log, locker: null });
  await assert.rejects(lockDir(dir, { log, locker: null }), { code: "UNAVAILABLE" });
  assert.match(await readFile(join(dir, "LOCK"), "utf8"), new RegExp(`^pid ${process.pid}$`, "m"));
  await release();
  await release(); // idempotent
  await assert.rejects(stat(join(dir, "LOCK")), { code: "ENOENT" });
});
