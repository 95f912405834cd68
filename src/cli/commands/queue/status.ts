import { requirePositional, type Command } from "../../command.js";
import { formatAge, MAP_POSITIONALS, withQueue } from "./open-queue.js";

export const command: Command = {
  spec: {
    name: "backpack queue status",
    summary:
      "Shows the replication queue: tasks waiting, due now, leased, waiting for a node that is down or full, the age of the oldest (replication lag), dead letters.",
    positionals: MAP_POSITIONALS,
    options: [{ name: "json", type: "boolean", description: "print one JSON object instead of text" }],
    notes: `
Output (text):
  depth: 1200
  due: 1100
  leased: 64
  waiting for an unreachable node: 36
  oldest task age: 2.3 s
  dead letters: 0
  servers: 10.0.0.5:6379 up, 10.0.0.6:6379 down
With --json: {"depth":1200,"due":1100,"leased":64,"unreachable":36,"oldestAgeMs":2300,"deadLetters":0,"servers":[{"endpoint":"10.0.0.5:6379","up":true},...]}
With several Redis servers, counts are estimated from the servers that answer (each task is on two).

Exit codes: 0 shown; 1 cluster not initialised or no queue server answers; 2 wrong arguments.

Example:
  backpack queue status zk1:2181 /backpack
  backpack queue status file:./data/cluster.json / --json`,
  },

  async run(args, io) {
    const zk = requirePositional(args, "zk");
    const root = requirePositional(args, "root");
    const stats = await withQueue(zk, root, (q) => q.stats());
    if (args.options.json === true) {
      io.stdout(JSON.stringify(stats) + "\n");
      return 0;
    }
    const lines = [
      `depth: ${stats.depth}`,
      `due: ${stats.due}`,
      `leased: ${stats.leased}`,
      `waiting for an unreachable node: ${stats.unreachable}`,
      `oldest task age: ${formatAge(stats.oldestAgeMs)}`,
      `dead letters: ${stats.deadLetters}`,
    ];
    if (stats.servers)
      lines.push(`servers: ${stats.servers.map((s) => `${s.endpoint} ${s.up ? "up" : "down"}`).join(", ")}`);
    io.stdout(lines.join("\n") + "\n");
    return 0;
  },
};
