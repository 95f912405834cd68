import { readdirSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/** The highest niceness Unix allows (the lowest CPU priority). */
export const MAX_NICE = 19;

/**
 * Lowers this process's CPU priority to the niceness `nice` (0: as started, 19: the lowest), for a process whose
 * work is background work, so that the processes serving clients on the same host come first. On Linux a
 * niceness belongs to a thread: every thread of the process gets it (`/proc/self/task`), and threads started
 * later inherit it, as do child processes. Never raises a priority back (without privileges a process may not).
 * Returns the niceness now in force; throws when the system refuses.
 */
export function lowerPriority(nice: number): number {
  const current = getPriority();
  if (nice <= current) return current;
  setPriority(nice);
  let threads: string[] = [];
  try {
    threads = readdirSync("/proc/self/task");
  } catch {
    // Not Linux: the call above set the whole process.
  }
  for (const tid of threads) {
    try {
      if (getPriority(Number(tid)) < nice) setPriority(Number(tid), nice);
    } catch {
      // A thread that ended meanwhile.
    }
  }
  return nice;
}
