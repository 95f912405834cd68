import { BackpackError } from "../../../common/errors.js";
import { formatChecksum } from "../../../common/checksum.js";
import { compareVersions, formatVersion } from "../../../common/version.js";
import { NodeClient, type NodeObject } from "../../../client/node-client.js";
import { createAgent } from "../../../client/http-agent.js";
import { requirePositional, type Command } from "../../command.js";
import { clientContext, parseAddress, explain, JSON_OPTION, TO_OPTION } from "./common.js";

interface Holder {
  server: string;
  url: string;
  /** `yes` (same checksum), `differs`, `no`, or `unreachable: <why>`. */
  holds: string;
}

export const command: Command = {
  spec: {
    name: "backpack stat",
    summary: "Shows a file's size, checksum and type, and which nodes of its shard hold it.",
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
    node 1        yes  http://one:10001
    node 4        no   http://two:10004     (a copy may still be queued)
A node holds the file ("yes"), not at all ("no"), or in another version ("older" or "newer").
With --json: {"address","size","checksum","contentType","lastModified","version","nodes":[{"server","url","holds"}]}.

Exit codes: 0 found; 1 not found or the cluster is unreachable; 2 wrong arguments.`,
  },

  async run(args, io) {
    const address = requirePositional(args, "address");
    const { shardId, key } = parseAddress(address);
    const ctx = clientContext(args, io, 1);
    const agent = createAgent({ connections: 4, connectTimeoutMs: 1000 });
    try {
      const [meta, view] = await Promise.all([
        ctx.client.head(ctx.base, shardId, key),
        ctx.client.cluster(ctx.base),
      ]).catch((err: unknown) => {
        throw new BackpackError("UNAVAILABLE", explain(err, ctx.base));
      });
      if (!meta) throw new BackpackError("NOT_FOUND", `${address} not found`);
      const shard = view.shards.find((s) => s.id === shardId);
      const nodes = new NodeClient(agent, { timeoutMs: 3000 });
      const holders: Holder[] = await Promise.all(
        (shard?.servers ?? []).map(async (server): Promise<Holder> => {
          const url = view.servers.find((s) => s.id === server)?.url ?? "";
          try {
            const obj = await nodes.head(url, key);
            return { server, url, holds: obj === undefined ? "no" : compareHeld(obj, meta) };
          } catch (err) {
            return { server, url, holds: `unreachable: ${(err as Error).message}` };
          }
        }),
      );
      const checksum = formatChecksum(meta.crc);
      if (args.options.json === true) {
        const doc = {
          address,
          size: meta.size,
          checksum,
          contentType: meta.contentType,
          lastModified: meta.lastModified,
          version: meta.version && formatVersion(meta.version),
        };
        io.stdout(JSON.stringify({ ...doc, nodes: holders }) + "\n");
        return 0;
      }
      const lines = [
        address,
        `  size          ${meta.size} bytes`,
        `  checksum      ${checksum} (CRC-32)`,
        `  content type  ${meta.contentType}`,
        `  modified      ${meta.lastModified}`,
        ...(meta.version ? [`  version       ${formatVersion(meta.version)}`] : []),
        ...holders.map(
          (h) =>
            `  node ${h.server.padEnd(8)} ${h.holds.padEnd(4)} ${h.url}${h.holds === "no" ? "     (a copy may still be queued)" : ""}`,
        ),
      ];
      io.stdout(lines.join("\n") + "\n");
      return 0;
    } finally {
      await Promise.all([ctx.close(), agent.close()]);
    }
  },
};

/** How a node's copy compares with the file the coordinator answers with: by version, else by checksum. */
function compareHeld(held: NodeObject, served: NodeObject): string {
  if (held.version && served.version) {
    const order = compareVersions(held.version, served.version);
    return order === 0 ? "yes" : order < 0 ? "older" : "newer";
  }
  return held.crc === served.crc ? "yes" : "differs";
}
