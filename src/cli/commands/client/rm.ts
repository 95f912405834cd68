import { BackpackError, toBackpackError } from "../../../common/errors.js";
import { requirePositional, type Command } from "../../command.js";
import { clientContext, parseAddress, explain, TO_OPTION, TOKEN_OPTION } from "./common.js";

export const command: Command = {
  spec: {
    name: "backpack rm",
    summary: "Deletes a file from every node of its shard (nodes that are down get a queued delete).",
    positionals: [{ name: "address", description: "<shard>:<key>, e.g. 1:hi.txt" }],
    options: [TO_OPTION, TOKEN_OPTION],
    notes: `
Output: "deleted <shard>:<key>".

Exit codes: 0 deleted; 1 not found or failed; 2 wrong arguments.

Example:
  backpack rm 1:hi.txt`,
  },

  async run(args, io) {
    const { shardId, key } = parseAddress(requirePositional(args, "address"));
    const ctx = clientContext(args, io, 1);
    try {
      const deleted = await ctx.client.delete(ctx.base, shardId, key).catch((err: unknown) => {
        const e = toBackpackError(err);
        throw new BackpackError(e.code, explain(e, ctx.base));
      });
      if (!deleted) throw new BackpackError("NOT_FOUND", `${shardId}:${key} not found`);
      io.stdout(`deleted ${shardId}:${key}\n`);
      return 0;
    } finally {
      await ctx.close();
    }
  },
};
