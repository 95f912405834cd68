import { createLogger } from "../../common/logger.js";
import { nodeConfig, NODE_DEFAULTS } from "../../node/config.js";
import { NodeService } from "../../node/service.js";
import { UsageError } from "../args.js";
import { optInt, optString, requirePositional, type Command } from "../command.js";
import {
  bytesOption,
  durationOption,
  logLevelOf,
  logLevelOption,
  parseHost,
  parsePort,
  secretOption,
  untilStopped,
} from "../options.js";
import { ringConfigOf, RING_OPTIONS, startRespawner } from "../ring-options.js";

export const command: Command = {
  spec: {
    name: "backpack node",
    summary:
      "Runs a storage node: the files of one data dir served over HTTP (PUT, GET, HEAD, DELETE /<key>, GET /stats, /metrics, /healthz).",
    positionals: [
      { name: "data-dir", description: "directory of the node's volumes (created if missing)" },
      { name: "host", description: "address to listen on, e.g. 127.0.0.1 or 0.0.0.0" },
      { name: "port", description: "port to listen on (0 picks a free one)" },
      {
        name: "redis-host",
        description: "accepted for compatibility with the original and ignored (the index is local now)",
        optional: true,
      },
      { name: "redis-port", description: "accepted and ignored, as <redis-host>", optional: true },
    ],
    options: [
      {
        name: "sync",
        type: "string",
        description:
          "batch: acknowledge writes after a shared fsync; none: no fsync (a crash loses recent writes)",
        default: "batch",
      },
      { name: "max-body", type: "string", description: "largest body of one PUT, e.g. 5gb", default: "1gb" },
      {
        name: "volume-size",
        type: "string",
        description: "a volume file rolls over past this size",
        default: "1gb",
      },
      {
        name: "read-cache",
        type: "string",
        description:
          "memory for records (up to 1 MiB each) read lately, answered without a disk read; 0 turns it off",
        default: "256mb",
      },
      {
        name: "compact-ratio",
        type: "string",
        description: "compact a sealed volume once this share of it is garbage (0-1)",
        default: String(NODE_DEFAULTS.compactGarbageRatio),
      },
      {
        name: "token-file",
        type: "string",
        description:
          "file holding the write token: PUT and DELETE then need Authorization: Bearer <token> (or set BACKPACK_WRITE_TOKEN)",
      },
      {
        name: "max-inflight-uploads",
        type: "string",
        description: "uploads received at once; more get 503 OVERLOADED",
        default: String(NODE_DEFAULTS.maxInflightUploads),
      },
      {
        name: "max-inflight-bytes",
        type: "string",
        description: "body bytes received at once; more get 503 OVERLOADED",
        default: "256mb",
      },
      {
        name: "headers-timeout",
        type: "string",
        description: "time allowed to send the request headers",
        default: "20s",
      },
      {
        name: "body-timeout",
        type: "string",
        description: "idle time allowed between pieces of a request body",
        default: "30s",
      },
      {
        name: "min-body-rate",
        type: "string",
        description:
          "slowest body rate allowed, per second over each --body-timeout of waiting (e.g. 256b, 1kb); slower is cut with 408; 0 turns it off",
        default: "256b",
      },
      {
        name: "scrub-rate",
        type: "string",
        description: "bytes per second the background scrub verifies at most (0: off)",
        default: "8mb",
      },
      {
        name: "scrub-every",
        type: "string",
        description: "a scrub pass over every volume starts at most this often",
        default: "24h",
      },
      {
        name: "rejoin",
        type: "boolean",
        description: "let repair merge this node's data even when it was away longer than --tombstone-grace",
      },
      {
        name: "tombstone-grace",
        type: "string",
        description: "how long a delete is remembered; a node away longer must be refilled, not merged",
        default: "7d",
      },
      ...RING_OPTIONS,
      logLevelOption("info"),
    ],
    notes: `
The original's form still works: backpack <data dir> <listen host> <listen port> [<redis host> <redis port>].
The two Redis arguments are ignored with a notice: the key index now lives in the data dir.

The write token is never taken from the command line (it would show in the process list): use --token-file or
the environment variable BACKPACK_WRITE_TOKEN.

Output: JSON log lines on stderr; the first one with "msg":"listening" carries the URL, e.g.
{"level":30,"msg":"listening","url":"http://127.0.0.1:8080"}. Runs until SIGINT or SIGTERM, then finishes
in-flight requests, closes the store and exits 0.

Exit codes: 0 stopped cleanly; 1 could not start (e.g. port in use, data dir unusable); 2 wrong arguments
(nothing is created).

Example:
  backpack /var/lib/backpack 0.0.0.0 10001 --token-file /etc/backpack/token
  backpack node ./data 127.0.0.1 0 --sync none --volume-size 64mb`,
  },

  async run(args, io) {
    const dataDir = requirePositional(args, "data-dir");
    const host = parseHost(requirePositional(args, "host"));
    const port = parsePort(requirePositional(args, "port"));
    const sync = optString(args, "sync") ?? "batch";
    if (sync !== "batch" && sync !== "none")
      throw new UsageError(`--sync must be batch or none, got "${sync}"`);
    const logLevel = logLevelOf(args, "info");
    const bytes = (name: string): number | undefined => bytesOption(args, name);
    const ms = (name: string): number | undefined => durationOption(args, name);
    const ratioText = optString(args, "compact-ratio");
    // Everything is validated before anything touches the disk: wrong arguments create nothing.
    const config = nodeConfig({
      dataDir,
      host,
      port,
      sync,
      maxBodyBytes: bytes("max-body"),
      volumeMaxBytes: bytes("volume-size"),
      readCacheBytes: bytesOption(args, "read-cache", true),
      maxInflightBytes: bytes("max-inflight-bytes"),
      maxInflightUploads: optInt(args, "max-inflight-uploads", 1),
      headersTimeoutMs: ms("headers-timeout"),
      bodyTimeoutMs: ms("body-timeout"),
      minBodyRate: bytesOption(args, "min-body-rate", true),
      tombstoneGraceMs: ms("tombstone-grace"),
      scrubBytesPerSec: bytesOption(args, "scrub-rate", true),
      scrubEveryMs: ms("scrub-every"),
      rejoin: args.options.rejoin === true,
      compactGarbageRatio: ratioText === undefined ? undefined : Number(ratioText),
      writeToken: secretOption(args, io, "token-file", "BACKPACK_WRITE_TOKEN", "write token"),
      ring: ringConfigOf(args, io, command.spec, "node"),
    });

    const log = createLogger({ level: logLevel, name: "node" });
    if (args.positionals["redis-host"] !== undefined) {
      log.warn(
        { redis: [args.positionals["redis-host"], args.positionals["redis-port"]].filter(Boolean).join(":") },
        "the Redis arguments are ignored: the key index now lives in the data dir",
      );
    }
    const service = new NodeService(config, { log });
    await service.start();
    log.info({ url: service.url, dataDir, sync, writeToken: config.writeToken !== undefined }, "listening");
    const respawner = startRespawner(args, service.ring?.ring, log);
    await untilStopped(io);
    respawner?.stop();
    log.info("stopping");
    await service.stop();
    log.info("stopped");
    log.flush();
    return 0;
  },
};
