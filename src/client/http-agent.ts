import { Agent } from "undici";

/**
 * One keep-alive connection pool per origin, shared by every client of a service. Timeouts are per request
 * (see each client), so a dead node fails fast instead of hanging a caller.
 */
export function createAgent(options: { connections?: number; connectTimeoutMs?: number } = {}): Agent {
  return new Agent({
    connections: options.connections ?? 64,
    connect: { timeout: options.connectTimeoutMs ?? 2000 },
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 60_000,
    pipelining: 1,
  });
}
