import { readSecretFile } from "../../common/config.js";
import { createLogger, type LogLevel } from "../../common/logger.js";
import { parseBytes, parseDuration } from "../../common/units.js";
import { nodeConfig, NODE_DEFAULTS } from "../../node/config.js";
import { NodeService } from "../../node/service.js";
import { UsageError } from "../args.js";
import { optInt, optString, requirePositional, type Command } from "../command.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

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
      { name: "log-level", type: "string", description: LOG_LEVELS.join(", "), default: "info" },
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
    const host = requirePositional(args, "host");
    const portText = requirePositional(args, "port");
    if (!/^\d+$/.test(portText) || Number(portText) > 65535) {
      throw new UsageError(`<port> must be a port number 0-65535, got "${portText}"`);
    }
    const sync = optString(args, "sync") ?? "batch";
    if (sync !== "batch" && sync !== "none")
      throw new UsageError(`--sync must be batch or none, got "${sync}"`);
    const logLevel = optString(args, "log-level") ?? "info";
    if (!LOG_LEVELS.includes(logLevel)) {
      throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
    }
    const bytes = (name: string): number | undefined => {
      const v = optString(args, name);
      return v === undefined ? undefined : parseBytes(v, `--${name}`);
    };
    const ms = (name: string): number | undefined => {
      const v = optString(args, name);
      return v === undefined ? undefined : parseDuration(v, `--${name}`);
    };
    const ratioText = optString(args, "compact-ratio");
    const tokenFile = optString(args, "token-file");
    const token =
      tokenFile !== undefined ? readSecretFile(tokenFile, "write token") : io.env.BACKPACK_WRITE_TOKEN;
    // Everything is validated before anything touches the disk: wrong arguments create nothing.
    const config = nodeConfig({
      dataDir,
      host,
      port: Number(portText),
      sync,
      maxBodyBytes: bytes("max-body"),
      volumeMaxBytes: bytes("volume-size"),
      maxInflightBytes: bytes("max-inflight-bytes"),
      maxInflightUploads: optInt(args, "max-inflight-uploads", 1),
      headersTimeoutMs: ms("headers-timeout"),
      bodyTimeoutMs: ms("body-timeout"),
      compactGarbageRatio: ratioText === undefined ? undefined : Number(ratioText),
      writeToken: token === undefined || token === "" ? undefined : token,
    });

    const log = createLogger({ level: logLevel as LogLevel, name: "node" });
    if (args.positionals["redis-host"] !== undefined) {
      log.warn(
        { redis: [args.positionals["redis-host"], args.positionals["redis-port"]].filter(Boolean).join(":") },
        "the Redis arguments are ignored: the key index now lives in the data dir",
      );
    }
    const service = new NodeService(config, { log });
    await service.start();
    log.info({ url: service.url, dataDir, sync, writeToken: config.writeToken !== undefined }, "listening");
    if (!io.stopSignal.aborted) {
      await new Promise<void>((resolve) =>
        io.stopSignal.addEventListener("abort", () => resolve(), { once: true }),
      );
    }
    log.info("stopping");
    await service.stop();
    log.info("stopped");
    log.flush();
    return 0;
  },
};
