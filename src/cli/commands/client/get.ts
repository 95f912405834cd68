import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { BackpackError } from "../../../common/errors.js";
import { expectStatus } from "../../../client/node-answers.js";
import { optString, requirePositional, type Command } from "../../command.js";
import { clientContext, parseAddress, explain, TO_OPTION } from "./common.js";

export const command: Command = {
  spec: {
    name: "backpack get",
    summary: "Downloads a file through a coordinator, which reads it from a healthy node of its shard.",
    positionals: [
      { name: "address", description: "<shard>:<key>, as printed by backpack put, e.g. 1:hi.txt" },
    ],
    options: [
      TO_OPTION,
      { name: "output", short: "o", type: "string", description: "write to this file instead of stdout" },
    ],
    notes: `
Output: the file's bytes on stdout, or in the -o file (written to a temp file beside it and renamed once
complete, so a failed download never leaves a partial file under that name).

Exit codes: 0 downloaded; 1 not found or failed (the message says which); 2 wrong arguments.

Example:
  backpack get 1:hi.txt -o hi.txt`,
  },

  async run(args, io) {
    const { shardId, key } = parseAddress(requirePositional(args, "address"));
    const output = optString(args, "output");
    const ctx = clientContext(args, io, 1);
    try {
      const res = await ctx.client.get(ctx.base, shardId, key).catch((err: unknown) => {
        throw new BackpackError("UNAVAILABLE", explain(err, ctx.base));
      });
      if (res.statusCode === 404) {
        await res.body.dump();
        throw new BackpackError("NOT_FOUND", `${shardId}:${key} not found`);
      }
      await expectStatus(res, [200], ctx.base, `${shardId}:${key}`);
      if (output === undefined) {
        await pipeline(res.body, io.stdoutStream, { end: false });
        return 0;
      }
      const tmp = `${output}.backpack-partial`;
      try {
        await pipeline(res.body, createWriteStream(tmp));
        await rename(tmp, output);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return 0;
    } finally {
      await ctx.close();
    }
  },
};
