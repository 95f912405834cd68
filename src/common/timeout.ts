import { BackpackError } from "./errors.js";

/**
 * Rejects after `ms` with `error()` (default: UPSTREAM_TIMEOUT naming `what`); the late result of `promise` is
 * ignored (and its error swallowed).
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  error: () => Error = () => new BackpackError("UPSTREAM_TIMEOUT", `${what} took longer than ${ms} ms`),
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
