import { open, readFile, unlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { BackpackError, systemCode } from "../common/errors.js";

/**
 * An exclusive lock between processes on one machine: a lock file created with `wx` (O_CREAT|O_EXCL) holding
 * the owner's pid. A lock left by a process that died (SIGKILL while holding it) is broken once its pid is
 * gone. The critical sections it guards are a read and an atomic write of a small file: milliseconds.
 */
export async function withFileLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  { timeoutMs = 10_000 }: { timeoutMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let waitMs = 2;
  for (;;) {
    try {
      const fh = await open(lockPath, "wx");
      try {
        await fh.writeFile(String(process.pid));
      } finally {
        await fh.close();
      }
      break;
    } catch (err) {
      if (systemCode(err) !== "EEXIST") throw err;
    }
    const owner = await lockOwner(lockPath);
    if (owner !== undefined && !processAlive(owner)) {
      // Break it only if it still names the dead owner (another waiter may have broken and retaken it).
      if ((await lockOwner(lockPath)) === owner) await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new BackpackError(
        "UNAVAILABLE",
        `${lockPath} is held by process ${owner ?? "?"} for more than ${timeoutMs} ms; remove it if that process is gone`,
      );
    }
    await sleep(waitMs + Math.random() * waitMs);
    waitMs = Math.min(waitMs * 2, 50);
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

async function lockOwner(lockPath: string): Promise<number | undefined> {
  try {
    const text = await readFile(lockPath, "utf8");
    const pid = Number(text.trim());
    // An empty file is a lock being written right now: treat as held by a live process.
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemCode(err) === "EPERM";
  }
}
