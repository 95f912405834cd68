import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/**
 * The level a process logs at, shared by its logger and every child of it, so that it can change while the
 * process runs (the cluster's runtime settings: `setLogLevel`). pino gives each child its own level, fixed
 * when the child is made; the threshold here is read at each call instead.
 */
interface Threshold {
  value: number;
  readonly initial: LogLevel;
}

const thresholds = new WeakMap<Logger, Threshold>();

function levelValue(level: LogLevel): number {
  return level === "silent" ? Infinity : pino.levels.values[level]!;
}

/** The project's logger: pino, JSON lines on stderr (stdout stays free for command output). */
export function createLogger(options: { level?: LogLevel; name?: string } = {}): Logger {
  const initial = options.level ?? "info";
  const threshold: Threshold = { value: levelValue(initial), initial };
  const opts: LoggerOptions = {
    // pino lets everything through; the shared threshold decides (one comparison per call).
    level: "trace",
    base: options.name === undefined ? { pid: process.pid } : { pid: process.pid, name: options.name },
    hooks: {
      logMethod(args, method, level) {
        if (level >= threshold.value) method.apply(this, args);
      },
    },
    onChild: (child) => thresholds.set(child, threshold),
  };
  const logger = pino(opts, pino.destination({ dest: 2, sync: false }));
  thresholds.set(logger, threshold);
  return logger;
}

/**
 * Changes the level of the process's logger (the one `log` is, or is a child of); null goes back to the level it
 * was created with. Loggers not made by `createLogger` (the silent one) are left as they are.
 */
export function setLogLevel(log: Logger, level: LogLevel | null): void {
  const threshold = thresholds.get(log);
  if (threshold) threshold.value = levelValue(level ?? threshold.initial);
}

/** A logger that drops everything: for tests and embedded uses that pass no logger. */
export const silentLogger: Logger = pino({ level: "silent" });
