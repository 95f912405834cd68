import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** The project's logger: pino, JSON lines on stderr (stdout stays free for command output). */
export function createLogger(options: { level?: LogLevel; name?: string } = {}): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? "info",
    base: options.name === undefined ? { pid: process.pid } : { pid: process.pid, name: options.name },
  };
  return pino(opts, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything: for tests and embedded uses that pass no logger. */
export const silentLogger: Logger = pino({ level: "silent" });
