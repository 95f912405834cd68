import { dashboardRoutes } from "../../dashboard/routes.js";
import { createLogger } from "../../common/logger.js";
import { parseBytes } from "../../common/units.js";
import { DevCluster, type DevClusterDescription } from "../../dev/cluster.js";
import { UsageError } from "../args.js";
import { optInt, optString, type Command } from "../command.js";

import { logLevelOf, logLevelOption, untilStopped } from "../options.js";

/** The default first port: coordinators on 12001 and 12002, as in the seed's walkthrough. */
export const DEV_BASE_PORT = 12001;

export const command: Command = {
  spec: {
    name: "backpack dev",
    summary:
      "Runs a whole cluster in one process: storage nodes grouped into shards, coordinators and a replicator on loopback, with the cluster map in a file and the replication queue on disk (no ZooKeeper or Redis needed).",
    positionals: [],
    options: [
      { name: "shards", type: "string", description: "number of shards", default: "3" },
      { name: "replicas", type: "string", description: "storage nodes per shard", default: "2" },
      { name: "coordinators", type: "string", description: "number of coordinators", default: "2" },
      {
        name: "data",
        type: "string",
        description: "data directory (or set BACKPACK_DATA)",
        default: "./data",
      },
      {
        name: "port",
        type: "string",
        description:
          "first port: coordinators on port, port+1, ...; the replicator next; nodes from port+10, then each coordinator's S3 endpoint; 0 for free ports (or set BACKPACK_PORT)",
        default: String(DEV_BASE_PORT),
      },
      { name: "host", type: "string", description: "address every service listens on", default: "127.0.0.1" },
      { name: "capacity", type: "string", description: "capacity of each new shard", default: "100gb" },
      {
        name: "sync",
        type: "string",
        description:
          "batch: a write is acknowledged after a shared fsync; none: no fsync (a crash loses recent writes)",
        default: "batch",
      },
      {
        name: "no-s3",
        type: "boolean",
        description: "the coordinators do not serve the S3 API (docs/s3.md)",
      },
      {
        name: "no-ring",
        type: "boolean",
        description: "the parts do not join the ring (membership, failure detection; docs/ring.md)",
      },
      logLevelOption("warn"),
    ],
    notes: `
The first start creates the seed's layout under --data: with 3 shards × 2 replicas, shard 1 on nodes 1 and 4,
shard 2 on 2 and 5, shard 3 on 3 and 6, all enabled. Later starts reuse it (every file is found again; a
different --shards/--replicas is ignored for an existing data dir, with a notice). A taken port is a clear
error naming it; --port 0 uses free ports and prints them.

Output: a table of the services' URLs and a curl walkthrough on stdout, then "backpack is ready" once every
service answers. Logs (JSON) on stderr. Ctrl-C (SIGINT) or SIGTERM stops every service cleanly.

Exit codes: 0 stopped cleanly; 1 could not start (e.g. a port is taken); 2 wrong arguments.

Example:
  npm start
  backpack dev --shards 2 --replicas 3 --data /tmp/bp --port 0`,
  },

  async run(args, io) {
    const count = (name: string, fallback: number, min: number): number =>
      optInt(args, name, min) ?? fallback;
    const shards = count("shards", 3, 1);
    const replicas = count("replicas", 2, 1);
    const coordinators = count("coordinators", 2, 1);
    const envPort = io.env.BACKPACK_PORT;
    if (envPort !== undefined && !/^\d+$/.test(envPort))
      throw new UsageError(`BACKPACK_PORT must be a port number, got "${envPort}"`);
    const basePort = count("port", envPort === undefined ? DEV_BASE_PORT : Number(envPort), 0);
    if (basePort > 65535 - 10 - shards * replicas - coordinators)
      throw new UsageError(`--port ${basePort} leaves no room for the nodes`);
    const sync = optString(args, "sync") ?? "batch";
    if (sync !== "batch" && sync !== "none")
      throw new UsageError(`--sync must be batch or none, got "${sync}"`);
    const logLevel = logLevelOf(args, "warn");
    const log = createLogger({ level: logLevel, name: "dev" });
    const cluster = new DevCluster({
      dataDir: optString(args, "data") ?? io.env.BACKPACK_DATA ?? "./data",
      host: optString(args, "host") ?? "127.0.0.1",
      basePort,
      shards,
      replicas,
      coordinators,
      shardCapacityBytes: parseBytes(optString(args, "capacity") ?? "100gb", "--capacity"),
      sync,
      ring: args.options["no-ring"] !== true,
      s3: args.options["no-s3"] !== true,
      log,
      coordinatorRoutes: dashboardRoutes(),
    });
    await cluster.start();
    const info = cluster.describe();
    io.stdout(banner(info));
    if (info.keptShape)
      io.stdout(
        `(reusing the cluster already in ${info.dataDir}; --shards/--replicas apply to a new data dir)\n`,
      );
    io.stdout("backpack is ready\n");
    log.info({ url: cluster.url }, "listening");
    await untilStopped(io);
    io.stdout("stopping...\n");
    await cluster.stop();
    io.stdout("stopped\n");
    log.flush();
    return 0;
  },
};

function banner(info: DevClusterDescription): string {
  const rows: [string, string][] = [
    ...info.coordinators.map((url, i): [string, string] => [`coordinator ${i + 1}`, url]),
    ["dashboard", `${info.coordinators[0] ?? ""}/ui  (admin token in ${info.adminTokenFile})`],
    ["replicator", info.replicator],
    ...info.nodes.map((n): [string, string] => [`node ${n.id} (shard ${n.shard})`, n.url]),
    ...info.s3.map((url, i): [string, string] => [`S3 endpoint ${i + 1}`, url]),
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  const c = info.coordinators[0] ?? "";
  const c2 = info.coordinators[1] ?? c;
  const to = c === `http://127.0.0.1:${DEV_BASE_PORT}` ? "" : ` --to ${c}`;
  return [
    `backpack: embedded cluster, data in ${info.dataDir}`,
    "",
    ...rows.map(([name, url]) => `  ${name.padEnd(width)}  ${url}`),
    "",
    "Try it:",
    "  echo 'hello, backpack!' > hello.txt",
    `  curl -X PUT -T hello.txt ${c}/hi.txt          # → {"shard_id":"<id>"}`,
    `  curl ${c2}/<id>:hi.txt                        # read back through any coordinator`,
    `  npx backpack put <file or dir>${to}`,
    `  npx backpack status${to}`,
    ...s3Lines(info),
    "",
  ].join("\n");
}

/** The S3 endpoint's ready-made local key, and one line to try it. */
function s3Lines(info: DevClusterDescription): string[] {
  const url = info.s3[0];
  if (url === undefined || info.s3Key === undefined) return [];
  return [
    "",
    `S3 (docs/s3.md), local key with every permission (kept in ${info.dataDir}/s3-local-key.json):`,
    `  export AWS_ACCESS_KEY_ID=${info.s3Key.id} AWS_SECRET_ACCESS_KEY=${info.s3Key.secret} AWS_DEFAULT_REGION=us-east-1`,
    `  aws --endpoint-url ${url} s3 mb s3://demo && aws --endpoint-url ${url} s3 cp hello.txt s3://demo/`,
  ];
}
