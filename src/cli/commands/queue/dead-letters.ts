import { optInt, requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withQueue } from "./open-queue.js";

export const command: Command = {
  spec: {
    name: "backpack queue dead-letters",
    summary: "Lists the tasks the replicators gave up on, oldest first, with the reason.",
    positionals: MAP_POSITIONALS,
    options: [
      { name: "limit", type: "string", description: "how many to list", default: "100" },
      { name: "json", type: "boolean", description: "print one JSON array instead of text" },
    ],
    notes: `
Output (text), one line per dead letter: <id> <failed at, ISO time> attempts=<n> <reason>, then the task:
  mbx3k2-4f1a9c0b2d3e 2026-01-05T10:00:00.000Z attempts=10 PUT http://n2:10001: answered 507 NO_SPACE
    {"op":"copy","shard":"1","sources":["1"],"target":"2","key":"a.jpg","crc":"0a1b2c3d","size":1024,...}
With --json: [{"id","raw","reason","attempts","failedAt"},...]. Nothing listed prints "no dead letters".
Put them back with backpack queue replay once the cause is fixed.

Exit codes: 0 listed; 1 cluster not initialised or no queue server answers; 2 wrong arguments.

Example:
  backpack queue dead-letters zk1:2181 /backpack --limit 20`,
  },

  async run(args, io) {
    const zk = requirePositional(args, "zk");
    const root = requirePositional(args, "root");
    const limit = optInt(args, "limit", 1) ?? 100;
    const letters = await withQueue(zk, root, (q) => q.deadLetters(limit));
    if (args.options.json === true) {
      io.stdout(JSON.stringify(letters) + "\n");
      return 0;
    }
    if (letters.length === 0) {
      io.stdout("no dead letters\n");
      return 0;
    }
    for (const d of letters) {
      io.stdout(
        `${d.id} ${new Date(d.failedAt).toISOString()} attempts=${d.attempts} ${d.reason}\n  ${d.raw}\n`,
      );
    }
    return 0;
  },
};
