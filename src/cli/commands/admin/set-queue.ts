import { parseQueueServers } from "../../../cluster/rules.js";
import { requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withClusterMap } from "./shared.js";

export const command: Command = {
  spec: {
    name: "backpack admin set-queue",
    summary: "Sets the replication queue: its name and the Redis servers that hold it.",
    positionals: [
      ...MAP_POSITIONALS,
      { name: "queue-key", description: "name of the replication queue in Redis, e.g. backpack-queue" },
      { name: "redis", description: "Redis servers of the queue, host:port[,host:port...]" },
    ],
    options: [],
    notes: `
Stored in /queue as {"key":"backpack-queue","servers":[{"host":"one","port":"13001"}]}, the original's layout.
Coordinators and replicators pick the change up at once; tasks still waiting on servers that were removed
are not moved.

Output: "Queue backpack-queue on one:13001, two:13002".

Exit codes: 0 done, 1 refused (cluster map not initialised, ZooKeeper unreachable), 2 wrong arguments.

Example:
  backpack-coordinator-set-queue one.local:2181 /backpack backpack-queue one:13001,two:13002,three:13003`,
  },
  async run(args, io) {
    const key = requirePositional(args, "queue-key");
    const servers = parseQueueServers(requirePositional(args, "redis"));
    await withClusterMap(args, (map) => map.setQueue({ key, servers }));
    io.stdout(`Queue ${key} on ${servers.map((s) => `${s.host}:${s.port}`).join(", ")}\n`);
    return 0;
  },
};
