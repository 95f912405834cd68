import { constants } from "node:fs";
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { BackpackError, systemCode } from "../common/errors.js";
import type { Logger } from "../common/logger.js";

/** The part of fs-native-extensions (CommonJS, no types of its own) this file uses. */
export interface FileLocker {
  /**
   * Takes an exclusive lock on the whole file without waiting; false when another open file description
   * holds one. On Linux an OFD lock (`F_OFD_SETLK`), on macOS `flock`, on Windows `LockFileEx`.
   */
  tryLock(fd: number): boolean;
  unlock(fd: number): void;
}

const native = loadNative();

/** The kernel lock when fs-native-extensions' prebuilt binary loads on this platform, else undefined. */
export const NATIVE_LOCKER: FileLocker | undefined = native.locker;

function loadNative(): { locker?: FileLocker; error?: unknown } {
  try {
    return { locker: createRequire(import.meta.url)("fs-native-extensions") as FileLocker };
  } catch (error) {
    return { error };
  }
}

/** Dirs locked by this process: a second fd of ours fails the kernel lock too, but the pid check cannot tell. */
const lockedHere = new Set<string>();

/**
 * One store per data dir. Holds an exclusive kernel lock on `<dir>/LOCK` for as long as the store is open:
 * taken atomically, and released by the kernel when the process dies however it dies (SIGKILL, a zombie
 * whose parent never reaps it, a host restart), so neither a stale pid nor a pid reused by another
 * process can keep a node from starting. The file's text (pid, host, start time) is for operators only.
 * Where the native lock is unavailable, falls back to the pid check (see `pidLock`), with a warning.
 * Resolves with the release: unlock and close (the file stays, see below).
 */
export async function lockDir(
  dir: string,
  opts: { log: Logger; locker?: FileLocker | null },
): Promise<() => Promise<void>> {
  const key = resolve(dir);
  if (lockedHere.has(key)) throw new BackpackError("UNAVAILABLE", `${dir} is already open in this process`);
  // Reserved before the first await, so two opens in this process cannot both get past the check.
  lockedHere.add(key);
  try {
    const locker = opts.locker === undefined ? NATIVE_LOCKER : (opts.locker ?? undefined);
    let unlock: () => Promise<void>;
    if (locker) {
      unlock = await kernelLock(dir, locker, opts.log);
    } else {
      opts.log.warn(
        { dir, err: native.error },
        "native file locks unavailable (fs-native-extensions did not load): the data dir lock falls back to " +
          "a pid check, which a zombie or a reused pid can fool and two simultaneous starts can both pass",
      );
      unlock = await pidLock(dir);
    }
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      try {
        await unlock();
      } finally {
        lockedHere.delete(key);
      }
    };
  } catch (err) {
    lockedHere.delete(key);
    throw err;
  }
}

async function kernelLock(dir: string, locker: FileLocker, log: Logger): Promise<() => Promise<void>> {
  const path = join(dir, "LOCK");
  // No O_TRUNC: the owner's text is replaced only once the lock is held. libuv opens with O_CLOEXEC, so no
  // child process inherits the descriptor (and with it the lock).
  const file = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  let held: boolean;
  try {
    held = locker.tryLock(file.fd);
  } catch (err) {
    await file.close();
    // EACCES is the other answer POSIX allows for a lock held elsewhere: refuse rather than fall back.
    if (systemCode(err) === "EACCES") throw inUse(dir, await ownerPid(path));
    // A filesystem without locks (ENOLCK: NFS without a lock service; EINVAL: a kernel before 3.15).
    log.warn(
      { dir, err },
      "the data dir's filesystem refused a file lock: falling back to a pid check, which a zombie or a " +
        "reused pid can fool and two simultaneous starts can both pass",
    );
    return pidLock(dir);
  }
  if (!held) {
    await file.close();
    throw inUse(dir, await ownerPid(path));
  }
  try {
    await file.truncate(0);
    await file.write(ownerText(), 0);
  } catch (err) {
    locker.unlock(file.fd);
    await file.close();
    throw err;
  }
  // The file is never unlinked: a third process could then lock a new file of that name while a second
  // one still holds a descriptor of the old inode and locks it, and both would open the dir.
  return async () => {
    try {
      locker.unlock(file.fd);
    } finally {
      await file.close();
    }
  };
}

/**
 * The fallback: the dir is taken when its LOCK file names no live process. Not atomic (two starts at one
 * moment can both pass), fooled by a zombie or a reused pid; only used where the kernel lock is unavailable.
 */
async function pidLock(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, "LOCK");
  const owner = await ownerPid(path);
  if (owner !== undefined && owner !== process.pid && alive(owner)) throw inUse(dir, owner);
  await writeFile(path, ownerText());
  // Removed at release: a leftover file naming a pid that a later process reuses would refuse the next open.
  return () => rm(path, { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemCode(err) === "EPERM";
  }
}

function inUse(dir: string, pid: number | undefined): BackpackError {
  const owner = pid === undefined ? "its LOCK file names no pid yet" : `pid ${pid} per its LOCK file`;
  return new BackpackError("UNAVAILABLE", `${dir} is in use by another process (${owner})`);
}

/** Informational: who holds the dir, for an operator who looks (never trusted by the kernel lock). */
function ownerText(): string {
  return `pid ${process.pid}\nhost ${hostname()}\nstarted ${new Date(performance.timeOrigin).toISOString()}\n`;
}

/** The pid a LOCK file names: `pid N` on a line, or a bare number (the file's older form). */
async function ownerPid(path: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (systemCode(err) === "ENOENT") return undefined;
    throw err;
  }
  const m = /^(?:pid )?(\d+)$/m.exec(text.trim());
  const pid = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}
