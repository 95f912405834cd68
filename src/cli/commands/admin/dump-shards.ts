import type { Command } from "../../command.js";
import { JSON_OPTION, MAP_POSITIONALS, printJson, sortedShards, withClusterMap } from "./shared.js";
import { formatBytes } from "../../../common/units.js";

export const command: Command = {
  spec: {
    name: "backpack admin dump-shards",
    summary: "Prints every shard with its servers, state and capacity.",
    positionals: [...MAP_POSITIONALS],
    options: [JSON_OPTION],
    notes: `
Output: per shard a line "<id> [<server ids>] <rw|ro> <used> / <capacity>", then one indented line per server
"<id> <url>" ("<id> (not registered)" for an id missing from the servers map); "No shards" when there are none.
With --json: {"shards":[{"id","servers":[{"id","url"}],"enabled","capacity","used"}]} (url null when the
server is not registered), sizes in bytes.

Exit codes: 0 done, 1 cluster map not initialised or ZooKeeper unreachable, 2 wrong arguments.

Example:
  $ backpack-coordinator-dump-shards one.local:2181 /backpack
  1 [1, 4] rw 0b / 100gb
    1 http://one:10001
    4 http://two:10004`,
  },
  async run(args, io) {
    const snapshot = await withClusterMap(args, async (map) => map.snapshot());
    const shards = sortedShards(snapshot);
    if (args.options.json === true) {
      const out = shards.map((s) => ({
        id: s.id,
        servers: s.servers.map((id) => ({ id, url: snapshot.servers[id]?.url ?? null })),
        enabled: s.enabled,
        capacity: s.capacity,
        used: s.used,
      }));
      io.stdout(printJson({ shards: out }));
      return 0;
    }
    if (shards.length === 0) io.stdout("No shards\n");
    for (const s of shards) {
      io.stdout(
        `${s.id} [${s.servers.join(", ")}] ${s.enabled ? "rw" : "ro"} ${formatBytes(s.used)} / ${formatBytes(s.capacity)}\n`,
      );
      for (const id of s.servers) io.stdout(`  ${id} ${snapshot.servers[id]?.url ?? "(not registered)"}\n`);
    }
    return 0;
  },
};
