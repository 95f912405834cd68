import { parseServerIds, validateId } from "../../../cluster/rules.js";
import { requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withClusterMap } from "./shared.js";

export const command: Command = {
  spec: {
    name: "backpack admin set-shard-servers",
    summary:
      "Changes the servers of an existing shard (replace a failed node, add a replica). Refuses to drop a server from a shard that holds data unless --force.",
    positionals: [
      ...MAP_POSITIONALS,
      { name: "id", description: "shard id" },
      { name: "servers", description: "the shard's new server ids, comma-separated, e.g. 1,7" },
    ],
    options: [
      {
        name: "force",
        type: "boolean",
        description: "drop servers even though the shard holds data (their replicas are no longer read)",
      },
    ],
    notes: `
Every server must be registered and in no other shard. Servers added to a shard that holds data receive its
files only through replication or repair: run a repair after adding one.

Output: "Shard 1 servers: [1, 7] (was [1, 4])" or "Shard 1 unchanged: [1, 4]".

Exit codes: 0 done, 1 refused (unknown shard or server, server in another shard, dropping a server of a shard
holding data without --force, cluster map not initialised, ZooKeeper unreachable), 2 wrong arguments.

Example:
  backpack-coordinator-set-shard-servers one.local:2181 /backpack 3 3,6`,
  },
  async run(args, io) {
    const id = validateId("shard", requirePositional(args, "id"));
    const servers = parseServerIds(requirePositional(args, "servers"));
    const force = args.options.force === true;
    const before = await withClusterMap(args, async (map) => {
      const previous = map.snapshot().shards[id]?.servers;
      await map.setShardServers(id, servers, { force });
      return previous ?? [];
    });
    const same = before.length === servers.length && before.every((s, i) => s === servers[i]);
    io.stdout(
      same
        ? `Shard ${id} unchanged: [${servers.join(", ")}]\n`
        : `Shard ${id} servers: [${servers.join(", ")}] (was [${before.join(", ")}])\n`,
    );
    return 0;
  },
};
