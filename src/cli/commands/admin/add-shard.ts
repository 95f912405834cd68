import { describeShard, parseServerIds, validateId } from "../../../cluster/rules.js";
import { formatBytes, parseBytes } from "../../../common/units.js";
import { requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withClusterMap } from "./shared.js";

export const command: Command = {
  spec: {
    name: "backpack admin add-shard",
    summary:
      "Adds a shard: a set of registered servers that each hold a replica of the shard's files, and its capacity. New shards are read-only until enabled.",
    positionals: [
      ...MAP_POSITIONALS,
      { name: "id", description: "shard id, e.g. 1 (letters, digits, _ . -)" },
      { name: "servers", description: "ids of the shard's servers, comma-separated, e.g. 1,4" },
      { name: "capacity", description: "bytes the shard may hold: 100gb, 1.5tb, 512mb or plain bytes" },
    ],
    options: [],
    notes: `
Refused (exit 1, nothing changed): a server that is not registered, a server already in another shard, and an
existing shard id with other servers: the message shows the existing shard (the original silently re-pointed
it). Change a shard's servers with set-shard-servers. Adding the same shard again changes nothing, except its
capacity when another one is given (e.g. to grow a shard).

Output: "Shard 1 added: [1, 4], 100gb, read-only; enable it with backpack-coordinator-enable-shard",
"Shard 1 unchanged" or "Shard 1 capacity changed: 200gb (was 100gb)".

Exit codes: 0 done, 1 refused (see above; cluster map not initialised; ZooKeeper unreachable), 2 wrong
arguments (the same server twice, a capacity such as "100 gigs", -1 or 0).

Example:
  backpack-coordinator-add-shard one.local:2181 /backpack 1 1,4 100gb`,
  },
  async run(args, io) {
    const id = validateId("shard", requirePositional(args, "id"));
    const servers = parseServerIds(requirePositional(args, "servers"));
    const capacity = parseBytes(requirePositional(args, "capacity"), "capacity");
    const { result, shard } = await withClusterMap(args, async (map) => {
      const result = await map.addShard(id, servers, capacity);
      return { result, shard: map.snapshot().shards[id] };
    });
    if (result.created) {
      io.stdout(
        `Shard ${id} added: [${servers.join(", ")}], ${formatBytes(capacity)}, read-only; enable it with backpack-coordinator-enable-shard\n`,
      );
    } else if (result.previousCapacity !== undefined) {
      io.stdout(
        `Shard ${id} capacity changed: ${formatBytes(capacity)} (was ${formatBytes(result.previousCapacity)})\n`,
      );
    } else {
      io.stdout(`Shard ${id} unchanged${shard ? `: ${describeShard(shard)}` : ""}\n`);
    }
    return 0;
  },
};
