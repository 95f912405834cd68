import { parseQueueServers } from "../../../cluster/rules.js";
import type { InitPart } from "../../../cluster/types.js";
import { requirePositional, type Command } from "../../command.js";
import { JSON_OPTION, MAP_POSITIONALS, printJson, withClusterMap } from "./shared.js";

const LABELS: Record<InitPart, string> = { servers: "Servers map", shards: "Shards map", queue: "Queue" };

export const command: Command = {
  spec: {
    name: "backpack admin init",
    summary:
      "Initialises a cluster map: creates the servers map, the shards map and the replication queue settings under the root path. Never overwrites: a second run says what already exists and changes nothing.",
    positionals: [
      ...MAP_POSITIONALS,
      { name: "queue-key", description: "name of the replication queue in Redis, e.g. backpack-queue" },
      { name: "redis", description: "Redis servers of the queue, host:port[,host:port...]" },
    ],
    options: [JSON_OPTION],
    notes: `
Output: one line per part, as the original printed them:
  Servers map initialized
  Shards map initialized
  Queue initialized
or, for a part that exists, e.g. "Servers map already exists (left unchanged)"; use set-queue to change the
queue. With --json: {"created":{"servers":true,"shards":true,"queue":true}}.

Exit codes: 0 done (also when everything already existed), 1 ZooKeeper unreachable or refused, 2 wrong
arguments (e.g. a Redis server that is not host:port).

Example:
  backpack-coordinator-init one.local:2181 /backpack backpack-queue one:13001,two:13002
  backpack-coordinator-init file:./data/cluster.json / backpack-queue 127.0.0.1:6379`,
  },
  async run(args, io) {
    const key = requirePositional(args, "queue-key");
    const servers = parseQueueServers(requirePositional(args, "redis"));
    const result = await withClusterMap(args, (map) => map.init({ key, servers }), {
      allowUninitialized: true,
    });
    if (args.options.json === true) {
      io.stdout(printJson(result));
      return 0;
    }
    for (const part of ["servers", "shards", "queue"] as const) {
      io.stdout(
        result.created[part]
          ? `${LABELS[part]} initialized\n`
          : `${LABELS[part]} already exists (left unchanged)\n`,
      );
    }
    return 0;
  },
};
