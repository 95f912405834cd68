import { BackpackError } from "../../../common/errors.js";
import type { FileLocation, NodeHolding } from "../../../client/coordinator-client.js";
import { requirePositional, type Command } from "../../command.js";
import { clientContext, parseAddress, explain, JSON_OPTION, TO_OPTION } from "./common.js";

export const command: Command = {
  spec: {
    name: "backpack stat",
    summary: "Shows a file's size, checksum and type, and what each node of its shard holds of it now.",
    positionals: [{ name: "address", description: "<shard>:<key>, e.g. 1:hi.txt" }],
    options: [TO_OPTION, JSON_OPTION],
    notes: `
Output:
  1:hi.txt
    size          17 bytes
    checksum      4f8a1c2e (CRC-32)
    content type  text/plain
    modified      Sat, 21 Nov 2026 22:00:00 GMT
    version       1795816800123456-00a3
    node 1        holds    http://one:10001
    node 4        missing  http://two:10004  copy queued (waiting: the node is down or was failing, 2 attempts)
Each node is asked now: it "holds" the file's newest version, holds an "older" one, is "missing" it, holds it
"damaged" (quarantined until repair restores it), or is "unreachable". What will fix a node that lacks it is
said after it: a copy queued (waiting, due, or being made now), the shard's repair under way, or nothing yet
(the next comparison of the shard's replicas will copy it).
With --json: GET /locate/<shard>:<key> of the coordinator ({"address","size","checksum","contentType",
"lastModified","version","queueAnswered","nodes":[{"server","url","holds","version","queued","repair"}]}).

Exit codes: 0 found; 1 not found or the cluster is unreachable; 2 wrong arguments.`,
  },

  async run(args, io) {
    const address = requirePositional(args, "address");
    const { shardId, key } = parseAddress(address);
    const ctx = clientContext(args, io, 1);
    try {
      const where = await ctx.client.locate(ctx.base, shardId, key).catch((err: unknown) => {
        throw new BackpackError("UNAVAILABLE", explain(err, ctx.base));
      });
      if (!where) throw new BackpackError("NOT_FOUND", `${address} not found`);
      io.stdout(args.options.json === true ? JSON.stringify(where) + "\n" : render(where));
      return 0;
    } finally {
      await ctx.close();
    }
  },
};

export function render(where: FileLocation): string {
  const lines = [
    where.address,
    `  size          ${where.size} bytes`,
    `  checksum      ${where.checksum} (CRC-32)`,
    `  content type  ${where.contentType}`,
    `  modified      ${where.lastModified}`,
    ...(where.version ? [`  version       ${where.version}`] : []),
    ...where.nodes.map((n) => {
      const note = n.holds === "holds" ? "" : `  ${fixNote(n, where.queueAnswered)}`;
      return `  node ${n.server.padEnd(8)} ${n.holds.padEnd(8)} ${n.url}${note}`;
    }),
  ];
  return lines.join("\n") + "\n";
}

/** What will bring a node that lacks the file up to date, as far as the cluster knows now. */
function fixNote(n: NodeHolding, queueAnswered: boolean): string {
  if (n.holds === "unreachable") return `(${n.reason ?? "no answer"})`;
  const task = n.queued[0];
  if (task) {
    const what = task.op === "copy" ? "copy" : "delete";
    const state =
      task.state === "leased"
        ? "being made now"
        : task.state === "due"
          ? "due, waiting for a replicator"
          : "waiting: the node is down or was failing";
    return `${what} queued (${state}, ${task.attempts} attempt${task.attempts === 1 ? "" : "s"})`;
  }
  if (n.repair) return "being repaired (the shard's comparison under way is copying to this node)";
  if (!queueAnswered) return "(the queue did not answer: queued copies unknown)";
  return "nothing queued: the next comparison of the shard's replicas copies it";
}
