import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { LiveSettings } from "../cluster/settings.js";
import { BackpackError } from "../common/errors.js";

/** Paths that are the coordinator's own (monitoring, the ring, operators' /admin/): never limited nor blocked. */
const OWN_PATHS = new Set(["/stats", "/status", "/metrics", "/healthz", "/cluster", "/ring"]);
const OWN_PREFIX = "/admin/";
/** How often a coordinator tells the others how many requests each client made here since. */
export const SHARE_EVERY_MS = 200;
/** Clients reported per message at most (the busiest first). */
const SHARE_MAX_CLIENTS = 1000;
/** A client not seen for this long is forgotten. */
const FORGET_MS = 60_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** The ring's part: a message to every other coordinator, and theirs to this one. */
export interface CountChannel {
  send(kind: string, value: unknown): void;
  onMessage(kind: string, handler: (value: unknown, origin: string) => void): void;
}

/**
 * Fleet-wide per-client limits ("instances correlate"), from the cluster's runtime settings. A client is its
 * write token when it sends one (as a fingerprint: `token:` and 16 hex digits of its SHA-256), else its IP
 * address. A blocked client is refused (403) by every coordinator. With a client rate set, each coordinator
 * keeps a token bucket per client (refilled at `perSec`, holding up to `burst`, at least 1) and takes from it
 * the requests the client made here and, as the ring reports them every 200 ms, at every other coordinator:
 * a client spreading its requests over several coordinators gets `429` with `Retry-After` from all of them
 * once its total is over the rate. Off (no rate set) it costs one Set lookup per request.
 */
export class ClientLimits {
  private readonly buckets = new Map<string, Bucket>();
  /** Requests per client here since the last report to the others. */
  private counts = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly settings: LiveSettings,
    private readonly ring: CountChannel | undefined,
    private readonly now: () => number = Date.now,
  ) {
    ring?.onMessage("client-counts", (value) => this.absorb(value));
  }

  start(): void {
    if (!this.ring) return;
    this.timer = setInterval(() => this.share(), SHARE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Throws FORBIDDEN for a blocked client and RATE_LIMITED for one over its rate; counts the request. */
  admit(req: IncomingMessage, path: string): void {
    const s = this.settings.current;
    if (s.version === 0 || OWN_PATHS.has(path) || path.startsWith(OWN_PREFIX)) return;
    const client = clientOf(req);
    if (s.blocklist.length > 0 && (s.blocklist.includes(client) || s.blocklist.includes(addressOf(req)))) {
      throw new BackpackError("FORBIDDEN", `client ${client} is blocked by the cluster's settings`);
    }
    const rate = s.clientRate;
    if (rate === null) return;
    const b = this.refill(client, rate);
    if (b.tokens < 1) {
      throw new BackpackError(
        "RATE_LIMITED",
        `client ${client} is over its rate of ${rate.perSec} requests/s`,
        {
          retryAfterSec: Math.max(1, Math.ceil((1 - b.tokens) / rate.perSec)),
        },
      );
    }
    b.tokens -= 1;
    this.counts.set(client, (this.counts.get(client) ?? 0) + 1);
  }

  private refill(client: string, rate: { perSec: number; burst: number }): Bucket {
    const now = this.now();
    const capacity = Math.max(1, rate.burst);
    let b = this.buckets.get(client);
    if (!b) this.buckets.set(client, (b = { tokens: capacity, at: now }));
    b.tokens = Math.min(capacity, b.tokens + ((now - b.at) / 1000) * rate.perSec);
    b.at = now;
    return b;
  }

  /** Another coordinator's counts: its requests come out of the same buckets. */
  private absorb(value: unknown): void {
    const rate = this.settings.current.clientRate;
    if (rate === null || typeof value !== "object" || value === null) return;
    for (const [client, n] of Object.entries(value as Record<string, unknown>)) {
      if (typeof n !== "number" || !(n > 0)) continue;
      this.refill(client, rate).tokens -= n;
    }
  }

  private share(): void {
    const now = this.now();
    for (const [client, b] of this.buckets) if (now - b.at > FORGET_MS) this.buckets.delete(client);
    if (this.counts.size === 0 || this.settings.current.clientRate === null) {
      this.counts.clear();
      return;
    }
    const busiest = [...this.counts].sort((x, y) => y[1] - x[1]).slice(0, SHARE_MAX_CLIENTS);
    this.counts = new Map();
    this.ring?.send("client-counts", Object.fromEntries(busiest));
  }
}

/** The client a request comes from: its write token's fingerprint when it sends one, else its IP address. */
export function clientOf(req: IncomingMessage): string {
  const auth = req.headers.authorization;
  if (typeof auth === "string" && /^Bearer\s+\S/i.test(auth)) {
    const token = auth.replace(/^Bearer\s+/i, "");
    return `token:${createHash("sha256").update(token).digest("hex").slice(0, 16)}`;
  }
  return addressOf(req);
}

function addressOf(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}
