import { secretOption } from "../../options.js";
import { BackpackError, hasCode } from "../../../common/errors.js";
import { createAgent } from "../../../client/http-agent.js";
import { CoordinatorClient } from "../../../client/coordinator-client.js";
import { UsageError, type OptionSpec, type ParsedArgs } from "../../args.js";
import { parseShardKey } from "../../../common/key.js";
import { optString, type CommandIo } from "../../command.js";

/** The embedded cluster's first coordinator (`npm start`), the default for every client command. */
export const DEFAULT_COORDINATOR = "http://127.0.0.1:12001";

export const TO_OPTION: OptionSpec = {
  name: "to",
  type: "string",
  description: "coordinator URL (or set BACKPACK_URL)",
  default: DEFAULT_COORDINATOR,
};

export const TOKEN_OPTION: OptionSpec = {
  name: "token-file",
  type: "string",
  description: "file holding the write token, for clusters that need one (or set BACKPACK_WRITE_TOKEN)",
};

export const JSON_OPTION: OptionSpec = { name: "json", type: "boolean", description: "print JSON" };

export interface ClientContext {
  base: string;
  client: CoordinatorClient;
  close(): Promise<void>;
}

export function clientContext(args: ParsedArgs, io: CommandIo, connections = 16): ClientContext {
  const raw = optString(args, "to") ?? io.env.BACKPACK_URL ?? DEFAULT_COORDINATOR;
  let base: string;
  try {
    const u = new URL(raw);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http(s)");
    base = u.origin;
  } catch {
    throw new BackpackError("INVALID_ARGUMENT", `--to "${raw}" is not an http(s) URL`);
  }
  const token = secretOption(args, io, "token-file", "BACKPACK_WRITE_TOKEN", "write token");
  const agent = createAgent({ connections });
  const client = new CoordinatorClient(agent, token ? { token } : {});
  return { base, client, close: () => agent.close() };
}

/** `<shard>:<key>` from the command line; a malformed one is a usage error (exit 2). */
export function parseAddress(text: string): { shardId: string; key: string } {
  try {
    return parseShardKey(text);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Errors worth another try: the cluster was busy, restarting, or a connection broke. */
export function isTransient(err: unknown): boolean {
  return [
    "UPSTREAM_FAILED",
    "UPSTREAM_TIMEOUT",
    "OVERLOADED",
    "UNAVAILABLE",
    "SHUTTING_DOWN",
    "INTERNAL",
  ].some((code) => hasCode(err, code as never));
}

/** Turns "connection refused" on the default URL into a hint to start the cluster. */
export function explain(err: unknown, base: string): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/ECONNREFUSED/.test(message)) {
    return `cannot reach the coordinator at ${base} (is the cluster running? start one with npm start, or pass --to <url>)`;
  }
  return message;
}
