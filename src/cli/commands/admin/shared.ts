/**
 * What every admin command shares: the `<zk> <root>` arguments, opening the map for one change, and the way
 * shards are listed.
 */
import { openClusterMap, targetFromArgs } from "../../../cluster/open.js";
import { requireInitialized } from "../../../cluster/rules.js";
import type { ClusterMap, ClusterSnapshot, ShardInfo } from "../../../cluster/types.js";
import { formatBytes } from "../../../common/units.js";
import type { OptionSpec, ParsedArgs, PositionalSpec } from "../../args.js";
import { requirePositional } from "../../command.js";

export const MAP_POSITIONALS: readonly PositionalSpec[] = [
  {
    name: "zk",
    description: "ZooKeeper servers host:port,... (or file:<path> for an embedded cluster map file)",
  },
  { name: "root", description: "ZooKeeper root path of the cluster, e.g. /backpack" },
];

export const JSON_OPTION: OptionSpec = {
  name: "json",
  type: "boolean",
  description: "print JSON instead of text",
};

/** How long a command waits for ZooKeeper: the operator hears about an unreachable ensemble within 10 s. */
const CONNECT_TIMEOUT_MS = 7_000;

/**
 * Opens the map named by `<zk> <root>`, runs `fn`, and closes it. Unless `allowUninitialized`, a root that was
 * never initialised is refused (NOT_INITIALIZED, pointing at backpack-coordinator-init) before `fn` runs.
 */
export async function withClusterMap<T>(
  args: ParsedArgs,
  fn: (map: ClusterMap) => Promise<T>,
  { allowUninitialized = false }: { allowUninitialized?: boolean } = {},
): Promise<T> {
  const zk = requirePositional(args, "zk");
  const root = requirePositional(args, "root");
  const map = openClusterMap(targetFromArgs(zk, root), { connectTimeoutMs: CONNECT_TIMEOUT_MS });
  await map.start();
  try {
    if (!allowUninitialized) requireInitialized(map.snapshot(), map.description);
    return await fn(map);
  } finally {
    await map.stop();
  }
}

/** Shard ids in a stable order: numbers numerically (2 before 10), then the rest by name. */
export function sortedShards(snapshot: ClusterSnapshot): ShardInfo[] {
  return Object.values(snapshot.shards).sort((a, b) => compareIds(a.id, b.id));
}

export function compareIds(a: string, b: string): number {
  const na = /^\d+$/.test(a) ? Number(a) : NaN;
  const nb = /^\d+$/.test(b) ? Number(b) : NaN;
  if (!Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  if (!Number.isNaN(na)) return -1;
  if (!Number.isNaN(nb)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Whole percent, rounded down, so a nearly full shard never shows 100%. */
export function percent(used: number, capacity: number): number {
  return capacity > 0 ? Math.floor((used / capacity) * 100) : 0;
}

/** The original's print-stats line: `1 [1, 4]: 0b / 100gb (0%) rw`. */
export function statsLine(shard: ShardInfo): string {
  const mode = shard.enabled ? "rw" : "ro";
  return `${shard.id} [${shard.servers.join(", ")}]: ${formatBytes(shard.used)} / ${formatBytes(shard.capacity)} (${percent(shard.used, shard.capacity)}%) ${mode}`;
}

export function printJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}
