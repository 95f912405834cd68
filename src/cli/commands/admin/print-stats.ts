import { formatBytes } from "../../../common/units.js";
import type { Command } from "../../command.js";
import {
  JSON_OPTION,
  MAP_POSITIONALS,
  percent,
  printJson,
  sortedShards,
  statsLine,
  withClusterMap,
} from "./shared.js";

export const command: Command = {
  spec: {
    name: "backpack admin print-stats",
    summary: "Prints each shard's usage against its capacity, then the cluster's total.",
    positionals: [...MAP_POSITIONALS],
    options: [JSON_OPTION],
    notes: `
Output, as the original printed it: one line per shard "<id> [<server ids>]: <used> / <capacity> (<percent>%)
<rw|ro>", then "Overall: <used> / <capacity> (<percent>%), <n> of <m> shards writable". Percentages are
rounded down. Writable shards (rw) are enabled; a full shard is still listed rw but coordinators skip it.
With --json: {"shards":[{"id","servers","enabled","capacity","used"}],"overall":{"capacity","used",
"shards","writableShards"}}, sizes in bytes.

Exit codes: 0 done, 1 cluster map not initialised or ZooKeeper unreachable, 2 wrong arguments.

Example:
  $ backpack-coordinator-print-stats one.local:2181 /backpack
  1 [1, 4]: 0b / 100gb (0%) rw
  2 [2, 5]: 0b / 100gb (0%) ro
  Overall: 0b / 200gb (0%), 1 of 2 shards writable`,
  },
  async run(args, io) {
    const snapshot = await withClusterMap(args, async (map) => map.snapshot());
    const shards = sortedShards(snapshot);
    const capacity = shards.reduce((sum, s) => sum + s.capacity, 0);
    const used = shards.reduce((sum, s) => sum + s.used, 0);
    const writable = shards.filter((s) => s.enabled).length;
    if (args.options.json === true) {
      io.stdout(
        printJson({ shards, overall: { capacity, used, shards: shards.length, writableShards: writable } }),
      );
      return 0;
    }
    for (const s of shards) io.stdout(`${statsLine(s)}\n`);
    io.stdout(
      `Overall: ${formatBytes(used)} / ${formatBytes(capacity)} (${percent(used, capacity)}%), ${writable} of ${shards.length} shards writable\n`,
    );
    return 0;
  },
};
