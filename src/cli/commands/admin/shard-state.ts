import { validateId } from "../../../cluster/rules.js";
import { requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withClusterMap } from "./shared.js";

/** enable-shard and disable-shard: one command each, this one body. */
export function shardStateCommand(enabled: boolean): Command {
  const verb = enabled ? "enable" : "disable";
  const state = enabled ? "writable" : "read-only";
  return {
    spec: {
      name: `backpack admin ${verb}-shard`,
      summary: enabled
        ? "Makes a shard writable: coordinators start placing new files on it."
        : "Makes a shard read-only: coordinators stop placing new files on it; its files stay readable.",
      positionals: [...MAP_POSITIONALS, { name: "id", description: "shard id" }],
      options: [],
      notes: `
Stored as the original did: "read_only":true in the shard's /shards-map entry while disabled, absent while
enabled.${enabled ? " Enabling needs every server of the shard registered." : ""}

Output: "Shard 1 is now ${state}" or "Shard 1 was already ${state}".

Exit codes: 0 done, 1 refused (unknown shard${enabled ? ", a server of the shard not registered" : ""}, cluster map
not initialised, ZooKeeper unreachable), 2 wrong arguments.

Example:
  backpack-coordinator-${verb}-shard one.local:2181 /backpack 1`,
    },
    async run(args, io) {
      const id = validateId("shard", requirePositional(args, "id"));
      const changed = await withClusterMap(args, async (map) => {
        const was = map.snapshot().shards[id]?.enabled;
        await map.setShardEnabled(id, enabled);
        return was !== enabled;
      });
      io.stdout(changed ? `Shard ${id} is now ${state}\n` : `Shard ${id} was already ${state}\n`);
      return 0;
    },
  };
}
