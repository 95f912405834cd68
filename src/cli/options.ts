import { isIP } from "node:net";
import { readSecretFile } from "../common/config.js";
import type { LogLevel } from "../common/logger.js";
import { parseBytes, parseDuration } from "../common/units.js";
import { UsageError, type OptionSpec, type ParsedArgs } from "./args.js";
import { optString, type CommandIo } from "./command.js";

/** Option parsing shared by the long-running commands (node, coordinator, replicator, dev, ...). */

export const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export function logLevelOption(defaultLevel: LogLevel): OptionSpec {
  return { name: "log-level", type: "string", description: LOG_LEVELS.join(", "), default: defaultLevel };
}

export function logLevelOf(args: ParsedArgs, defaultLevel: LogLevel): LogLevel {
  const level = optString(args, "log-level") ?? defaultLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}, got "${level}"`);
  }
  return level as LogLevel;
}

/** Whether text is a port number 0-65535 (0 picks a free port). */
export function isPort(text: string): boolean {
  return /^\d{1,5}$/.test(text) && Number(text) <= 65535;
}

/** A port number 0-65535 given as text (0 picks a free port). */
export function parsePort(text: string, what = "<port>"): number {
  if (!isPort(text)) throw new UsageError(`${what} must be a port number 0-65535, got "${text}"`);
  return Number(text);
}

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Whether text is an address to listen on: an IPv4 or IPv6 address, or a host name (`localhost`, `one.local`). */
export function isHost(text: string): boolean {
  return isIP(text) !== 0 || HOST_NAME.test(text);
}

/** An address to listen on, checked before anything is created. */
export function parseHost(text: string, what = "<host>"): string {
  if (!isHost(text)) throw new UsageError(`${what} must be an IP address or a host name, got "${text}"`);
  return text;
}

/** A size option (`--max-body 5gb`), or undefined when not given; `allowZero` for a size where 0 means off. */
export function bytesOption(args: ParsedArgs, name: string, allowZero = false): number | undefined {
  const v = optString(args, name);
  return v === undefined ? undefined : parseBytes(v, `--${name}`, allowZero);
}

/** A duration option (`--node-timeout 10s`), in ms, or undefined when not given. */
export function durationOption(args: ParsedArgs, name: string): number | undefined {
  const v = optString(args, name);
  return v === undefined ? undefined : parseDuration(v, `--${name}`);
}

/**
 * A secret from a file option or, failing that, an environment variable; never from the command line (it
 * would show in the process list). Undefined when neither is set.
 */
export function secretOption(
  args: ParsedArgs,
  io: CommandIo,
  option: string,
  env: string,
  what: string,
): string | undefined {
  const file = optString(args, option);
  const value = file !== undefined ? readSecretFile(file, what) : io.env[env];
  return value === undefined || value === "" ? undefined : value;
}

/** Resolves when the operator asks the command to stop (SIGINT/SIGTERM). */
export function untilStopped(io: CommandIo): Promise<void> {
  return new Promise((resolve) => {
    if (io.stopSignal.aborted) resolve();
    else io.stopSignal.addEventListener("abort", () => resolve(), { once: true });
  });
}
