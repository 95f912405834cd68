import type { Socket } from "node:net";
import { Agent, buildConnector } from "undici";

/**
 * One keep-alive connection pool per origin, shared by every client of a service. Timeouts are per request
 * (see each client), so a dead node fails fast instead of hanging a caller. With `sockets`, every connection
 * the agent opens is registered there, so that those to one node can be cut at once (the ring declared it
 * dead: requests waiting on it fail now instead of at their timeout).
 */
export function createAgent(
  options: { connections?: number; connectTimeoutMs?: number; sockets?: OriginSockets } = {},
): Agent {
  const timeout = options.connectTimeoutMs ?? 2000;
  const sockets = options.sockets;
  const base = buildConnector({ timeout });
  return new Agent({
    connections: options.connections ?? 64,
    connect: sockets
      ? (opts, callback): void =>
          base(opts, (err, socket) => {
            if (socket) sockets.add(`${opts.hostname}:${opts.port || "80"}`, socket);
            if (err) callback(err, null);
            else callback(null, socket);
          })
      : { timeout },
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 60_000,
    pipelining: 1,
  });
}

/** The open connections of a service's clients, by host:port (lower case). */
export class OriginSockets {
  private readonly byAuthority = new Map<string, Set<Socket>>();

  add(authority: string, socket: Socket): void {
    const key = authority.toLowerCase();
    let set = this.byAuthority.get(key);
    if (!set) this.byAuthority.set(key, (set = new Set()));
    set.add(socket);
    socket.once("close", () => {
      set.delete(socket);
      if (set.size === 0 && this.byAuthority.get(key) === set) this.byAuthority.delete(key);
    });
  }

  /** Destroys every connection to `authority`: the requests on them fail at once. Returns how many. */
  cut(authority: string): number {
    const set = this.byAuthority.get(authority.toLowerCase());
    if (!set) return 0;
    const n = set.size;
    for (const s of set) s.destroy();
    return n;
  }
}
