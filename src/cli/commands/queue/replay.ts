import { UsageError } from "../../args.js";
import { requirePositional, type Command } from "../../command.js";
import { MAP_POSITIONALS, withQueue } from "./open-queue.js";

export const command: Command = {
  spec: {
    name: "backpack queue replay",
    summary: "Puts dead letters back in the replication queue (fresh attempts), by id or all of them.",
    positionals: [
      ...MAP_POSITIONALS,
      {
        name: "ids",
        description: "dead letter ids (from backpack queue dead-letters)",
        optional: true,
        variadic: true,
      },
    ],
    options: [
      { name: "all", type: "boolean", description: "replay every dead letter" },
      { name: "json", type: "boolean", description: 'print {"replayed":<n>} instead of text' },
    ],
    notes: `
Give ids, or --all (never both, never neither: a replay of everything is asked for explicitly).

Output: "replayed <n> task(s)"; ids that are not dead letters (any more) are not counted.

Exit codes: 0 done (also when nothing matched); 1 cluster not initialised or no queue server answers;
2 wrong arguments.

Example:
  backpack queue replay zk1:2181 /backpack mbx3k2-4f1a9c0b2d3e
  backpack queue replay zk1:2181 /backpack --all`,
  },

  async run(args, io) {
    const zk = requirePositional(args, "zk");
    const root = requirePositional(args, "root");
    const all = args.options.all === true;
    if (all === args.rest.length > 0) throw new UsageError("give dead letter ids or --all");
    const n = await withQueue(zk, root, (q) => q.replay(all ? undefined : args.rest));
    io.stdout(
      args.options.json === true ? JSON.stringify({ replayed: n }) + "\n" : `replayed ${n} task(s)\n`,
    );
    return 0;
  },
};
