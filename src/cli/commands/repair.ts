import { join } from "node:path";
import { createAgent } from "../../client/http-agent.js";
import { NodeClient } from "../../client/node-client.js";
import { openClusterMap, targetFromArgs } from "../../cluster/open.js";
import { BackpackError } from "../../common/errors.js";
import { silentLogger } from "../../common/logger.js";
import { AntiEntropy } from "../../replicator/anti-entropy.js";
import type { ShardReport } from "../../replicator/repair-report.js";
import { Copier } from "../../replicator/copier.js";
import { UsageError } from "../args.js";
import { optInt, optString, type Command } from "../command.js";
import { bytesOption, secretOption } from "../options.js";
import { ProgressBar } from "../progress.js";

export const command: Command = {
  spec: {
    name: "backpack repair",
    summary:
      "Compares every shard's replicas now and repairs what differs (missing, older or damaged copies, missed deletes).",
    positionals: [
      {
        name: "where",
        description:
          "[<zk> <root>] [<shard>...]: ZooKeeper servers (host:port[,...] or file:<path>) and root path, then shards; without <zk> <root>, the embedded cluster under --data; without shards, every shard",
        optional: true,
        variadic: true,
      },
    ],
    options: [
      { name: "dry-run", type: "boolean", description: "print what would be repaired, change nothing" },
      { name: "json", type: "boolean", description: "print one JSON report per shard instead of text" },
      { name: "data", type: "string", description: "the embedded cluster's data dir", default: "./data" },
      { name: "rate", type: "string", description: "repairs per second at most", default: "500" },
      { name: "bandwidth", type: "string", description: "bytes per second copied at most", default: "64mb" },
      {
        name: "token-file",
        type: "string",
        description: "file holding the nodes' write token (or set BACKPACK_WRITE_TOKEN)",
      },
    ],
    notes: `
The same comparison the replicators run continuously (docs/queue.md, "Repair"), now, with progress: each
server's bucket digests, then the differing buckets key by key. The newest version held intact anywhere wins:
a server missing it, holding an older version, or holding it damaged gets a verified copy; a delete reaches
every server. A node whose data was away longer than its tombstone grace period is not merged (it is listed
as skipped with the reason and what to do).

Output:
  shard 1: servers 1,4 compared; 3 differing buckets, 2 under-replicated files; copied 2, deleted 1, restored 0
  shard 2: servers 2,5 compared; replicas identical
With --dry-run, one line per repair it would make: "copy <key> to server 4 (version ...)".

Exit codes: 0 every difference repaired (or none); 1 something could not be repaired or compared (a server
unreachable or away too long, a file damaged on every replica); 2 wrong arguments.

Example:
  backpack repair                                    # every shard of the embedded cluster under ./data
  backpack repair 2 --dry-run                        # shard 2 of the embedded cluster
  backpack repair zk1:2181,zk2:2181 /backpack 3      # shard 3 of a distributed cluster`,
  },

  async run(args, io) {
    // A ZooKeeper connect string has host:port (or is file:<path>); a shard id given alone is a shard.
    const words = [...args.rest];
    const zk = words[0]?.includes(":") ? words.shift() : undefined;
    const root = zk === undefined ? undefined : words.shift();
    if (zk !== undefined && root === undefined) throw new UsageError("missing <root> after <zk>");
    const dataDir = optString(args, "data") ?? io.env.BACKPACK_DATA ?? "./data";
    const target =
      zk === undefined || root === undefined
        ? { file: join(dataDir, "cluster.json") }
        : targetFromArgs(zk, root);
    const dryRun = args.options["dry-run"] === true;
    const json = args.options.json === true;
    const filesPerSec = optInt(args, "rate", 1) ?? 500;
    const bytesPerSec = bytesOption(args, "bandwidth") ?? 64 * 1024 ** 2;
    const token = secretOption(args, io, "token-file", "BACKPACK_WRITE_TOKEN", "write token");

    const map = openClusterMap(target, { log: silentLogger });
    await map.start();
    const agent = createAgent({ connections: 16 });
    try {
      const snapshot = map.snapshot();
      if (!snapshot.initialized) {
        throw new BackpackError(
          "NOT_INITIALIZED",
          "the cluster map is not initialised (backpack-coordinator-init)",
        );
      }
      const shards = words.length > 0 ? words : Object.keys(snapshot.shards).sort();
      for (const s of shards) {
        if (!Object.hasOwn(snapshot.shards, s)) throw new BackpackError("NOT_FOUND", `no shard ${s}`);
      }
      const nodes = new NodeClient(agent, {});
      const copier = new Copier(nodes, { token, timeoutMs: 30_000 });
      const repair = new AntiEntropy(map, nodes, copier, silentLogger, {
        intervalMs: 0,
        filesPerSec,
        bytesPerSec,
        token,
        timeoutMs: 30_000,
      });
      let ok = true;
      for (const shard of shards) {
        const bar = new ProgressBar(io.stderr, io.isTTY && !json);
        const started = Date.now();
        const report = await repair.compareShard(shard, {
          dryRun,
          onPlan: (p) => {
            if (!json) io.stdout(`${p.kind} ${p.key} to server ${p.target} (version ${p.version})\n`);
          },
          onProgress: (r) => {
            const needed = Object.values(r.progress).reduce((n, p) => n + p.needed, 0);
            const done = Object.values(r.progress).reduce((n, p) => n + p.done, 0);
            bar.update({
              filesDone: done,
              filesTotal: needed,
              filesFailed: r.failed,
              bytesDone: 0,
              bytesTotal: 0,
              elapsedMs: Date.now() - started,
            });
          },
        });
        bar.done();
        if (report.failed > 0 || report.unrepairable.length > 0 || report.skipped.length > 0) ok = false;
        io.stdout(json ? JSON.stringify(report) + "\n" : describe(report, dryRun) + "\n");
      }
      return ok ? 0 : 1;
    } finally {
      await agent.close();
      await map.stop();
    }
  },
};

/** One paragraph per shard: what was compared, found and done. */
export function describe(r: ShardReport, dryRun: boolean): string {
  const lines: string[] = [];
  const head = `shard ${r.shard}: servers ${r.compared.join(",") || "none"} compared`;
  if (r.differingBuckets === 0 && r.skipped.length === 0) {
    lines.push(`${head}; replicas identical`);
  } else {
    const did = dryRun
      ? `${Object.values(r.progress).reduce((n, p) => n + p.needed, 0)} repairs needed (dry run)`
      : `copied ${r.copied}, deleted ${r.deleted}, restored ${r.restored}` +
        (r.failed > 0 ? `, ${r.failed} failed` : "");
    lines.push(
      `${head}; ${r.differingBuckets} differing buckets, ${r.underReplicated} under-replicated files; ${did}`,
    );
  }
  for (const s of r.skipped) lines.push(`  server ${s.server} not compared: ${s.reason}`);
  if (r.unrepairable.length > 0) {
    lines.push(
      `  ${r.unrepairable.length} files damaged on every replica: ${r.unrepairable.slice(0, 10).join(", ")}`,
    );
  }
  return lines.join("\n");
}
