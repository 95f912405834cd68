import { readFileSync } from "node:fs";
import { BackpackError } from "./errors.js";

/**
 * One typed config object per service, built once from layers (defaults < config file < env < flags),
 * validated with every problem reported at once, then frozen and passed down. Nothing outside config loading
 * and `cli/` reads `process.env`.
 */
export function buildConfig<T extends object>(
  what: string,
  layers: ReadonlyArray<Partial<T> | undefined>,
  validate: (config: T, problems: string[]) => void,
): Readonly<T> {
  const merged = {} as Record<string, unknown>;
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) merged[k] = v;
  }
  const config = merged as T;
  const problems: string[] = [];
  validate(config, problems);
  if (problems.length > 0) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `invalid ${what} configuration:\n  - ${problems.join("\n  - ")}`,
    );
  }
  return deepFreeze(config);
}

export function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === "object" && !Object.isFrozen(value) && !Buffer.isBuffer(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Reads a secret (write token, cluster secret) from a file: trimmed, must not be empty. */
export function readSecretFile(path: string, what = "token"): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `cannot read the ${what} file ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (text.length === 0) throw new BackpackError("INVALID_ARGUMENT", `the ${what} file ${path} is empty`);
  return text;
}

/** Validation helpers: each pushes a message with the fix when the value is wrong. */
export const check = {
  port(problems: string[], name: string, v: unknown): void {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 65535) {
      problems.push(`${name} must be a port number 0-65535 (0 picks a free port), got ${String(v)}`);
    }
  },
  positiveInt(problems: string[], name: string, v: unknown): void {
    if (!Number.isSafeInteger(v) || (v as number) <= 0) {
      problems.push(`${name} must be a whole number greater than 0, got ${String(v)}`);
    }
  },
  nonNegative(problems: string[], name: string, v: unknown): void {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      problems.push(`${name} must be a number ≥ 0, got ${String(v)}`);
    }
  },
  oneOf(problems: string[], name: string, v: unknown, allowed: readonly string[]): void {
    if (typeof v !== "string" || !allowed.includes(v)) {
      problems.push(`${name} must be one of ${allowed.join(", ")}, got ${String(v)}`);
    }
  },
  nonEmpty(problems: string[], name: string, v: unknown): void {
    if (typeof v !== "string" || v.length === 0) problems.push(`${name} must not be empty`);
  },
};
