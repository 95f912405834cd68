import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatDuration } from "../common/units.js";

const FILE = "alive";
/** How often a running node notes that it is alive (the precision of "away for how long"). */
const EVERY_MS = 60_000;

/**
 * A running node writes the time into `<data dir>/alive` every minute. At the next start that tells how long
 * the data was away from its shard: longer than the tombstone grace period, and it may hold files whose
 * deletes the other replicas have forgotten since, so repair must not merge it back.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly dir: string) {}

  /** When the data dir was last alive (ms since the epoch), or undefined for a new one. */
  async lastAlive(): Promise<number | undefined> {
    try {
      const t = Number((await readFile(join(this.dir, FILE), "utf8")).trim());
      return Number.isFinite(t) && t > 0 ? t : undefined;
    } catch {
      return undefined;
    }
  }

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat().catch(() => undefined), EVERY_MS).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.beat().catch(() => undefined);
  }

  private async beat(): Promise<void> {
    const path = join(this.dir, FILE);
    await writeFile(`${path}.tmp`, `${Date.now()}\n`);
    await rename(`${path}.tmp`, path);
  }
}

/** Why a node away since `lastAlive` must not be merged, or undefined when it may. */
export function awayTooLong(lastAlive: number | undefined, now: number, graceMs: number): string | undefined {
  if (lastAlive === undefined || now - lastAlive <= graceMs) return undefined;
  return (
    `this node's data was away for ${formatDuration(now - lastAlive)}, longer than the tombstone grace period ` +
    `(${formatDuration(graceMs)}): it may hold files deleted meanwhile. Wipe its data dir to have it refilled ` +
    `from its replicas, or restart it with --rejoin to merge it as it is`
  );
}
