import { BackpackError, toBackpackError } from "../common/errors.js";
import {
  formatHelp,
  parseCommandLine,
  usageLine,
  UsageError,
  type CommandSpec,
  type ParsedArgs,
} from "./args.js";

/** What a command may touch of the outside world; tests pass their own. */
export interface CommandIo {
  stdout: (text: string) => void;
  /** Standard output as a stream, for binary output (downloads). */
  stdoutStream: NodeJS.WritableStream;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the operator asks a long-running command to stop (SIGINT/SIGTERM). */
  stopSignal: AbortSignal;
  isTTY: boolean;
}

export interface Command {
  spec: CommandSpec;
  /** Returns the exit code; long-running commands resolve once they have stopped. */
  run(args: ParsedArgs, io: CommandIo): Promise<number>;
}

/** Exit codes: 0 ok, 1 refused or failed, 2 usage. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export async function runCommand(command: Command, argv: readonly string[], io: CommandIo): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseCommandLine(command.spec, argv);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(
        `${command.spec.name}: ${err.message}\n${usageLine(command.spec)}\nRun with --help for details.\n`,
      );
      return EXIT.USAGE;
    }
    throw err;
  }
  if (args.help) {
    io.stdout(formatHelp(command.spec));
    return EXIT.OK;
  }
  try {
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(
        `${command.spec.name}: ${err.message}\n${usageLine(command.spec)}\nRun with --help for details.\n`,
      );
      return EXIT.USAGE;
    }
    const e = toBackpackError(err);
    if (e.code === "INVALID_ARGUMENT") {
      io.stderr(`${command.spec.name}: ${e.message}\n${usageLine(command.spec)}\n`);
      return EXIT.USAGE;
    }
    const detail = e.code === "INTERNAL" && e.cause instanceof Error ? `\n${e.cause.stack ?? ""}` : "";
    io.stderr(`${command.spec.name}: ${e.message}${detail}\n`);
    return EXIT.FAILED;
  }
}

/** The value of a string option, or undefined. */
export function optString(args: ParsedArgs, name: string): string | undefined {
  const v = args.options[name];
  return typeof v === "string" ? v : undefined;
}

/** A whole number option (`--concurrency 8`), validated. */
export function optInt(args: ParsedArgs, name: string, min = 0): number | undefined {
  const v = optString(args, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min)
    throw new UsageError(`--${name} must be a whole number ≥ ${min}, got "${v}"`);
  return Number(v);
}

export function requirePositional(args: ParsedArgs, name: string): string {
  const v = args.positionals[name];
  if (v === undefined) throw new UsageError(`missing <${name}>`);
  return v;
}

export function refuse(message: string): never {
  throw new BackpackError("CONFLICT", message);
}
