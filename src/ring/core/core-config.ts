/** Tunables of one ring member's core. Times in ms. */
export interface RingCoreConfig {
  id: string;
  /** host:port this member listens on for the ring. */
  addr: string;
  meta: Readonly<Record<string, string>>;
  /** Addresses (host:port) to join through and to keep probing while they are not alive in the view. */
  seeds: readonly string[];
  /** SWIM protocol period T: one probe per period. */
  periodMs: number;
  /** Direct-ping timeout before asking `indirectChecks` others to ping-req the target. */
  probeTimeoutMs: number;
  indirectChecks: number;
  /** Suspicion timeout = mult × max(1, log10 N) × T; Lifeguard lets it start `suspicionMaxMult` times longer. */
  suspicionMult: number;
  suspicionMaxMult: number;
  /** Lifeguard (local health, dynamic suspicion timeout, buddy pings, nacks); off only to show why it is on. */
  lifeguard: boolean;
  awarenessMax: number;
  /** K: number of hash-permuted rings (ring 0 carries the token). */
  rings: number;
  /** Circulate the token at all (the simulator turns it off for detection-only runs). */
  token: boolean;
  /** How long each member holds the token before passing it on (the seed's brake), ms. */
  tokenHoldMs: number;
  tokenTimeoutMinMs: number;
  /** Membership news is batched per neighbour for this long before it is sent on (bounds the message rate). */
  gossipDelayMs: number;
  /** Partition healing: every period, probe one dead or seed member with probability healFanout / N. */
  healIntervalMs: number;
  healFanout: number;
  /** Minimum time between two full syncs with the same peer. */
  syncIntervalMs: number;
  joinRetryMs: number;
  /** Dead/left members are kept (and gossiped) this long before being forgotten. */
  reapAfterMs: number;
  /** Recent broadcasts kept for anti-entropy. */
  broadcastLog: number;
  /** Starting incarnation (a restarted member is raised above its old one by refutation anyway). */
  incarnation: number;
}

export type RingCoreOptions = Pick<RingCoreConfig, "id" | "addr"> & Partial<RingCoreConfig>;

/** Defaults for a LAN cluster (memberlist-like 1 s period), scaled by `periodMs` when that is given. */
export function coreConfig(options: RingCoreOptions): RingCoreConfig {
  const periodMs = options.periodMs ?? 1000;
  return {
    meta: {},
    seeds: [],
    periodMs,
    probeTimeoutMs: Math.round(periodMs / 2),
    indirectChecks: 3,
    suspicionMult: 3,
    suspicionMaxMult: 6,
    lifeguard: true,
    awarenessMax: 8,
    rings: 3,
    token: true,
    tokenHoldMs: 100,
    tokenTimeoutMinMs: Math.max(1000, 4 * periodMs),
    gossipDelayMs: Math.min(50, periodMs / 5),
    healIntervalMs: Math.max(1000, 5 * periodMs),
    healFanout: 3,
    syncIntervalMs: Math.max(2000, 10 * periodMs),
    joinRetryMs: Math.max(500, 2 * periodMs),
    reapAfterMs: 24 * 3600_000,
    broadcastLog: 256,
    incarnation: 0,
    ...withoutUndefined(options),
    id: options.id,
    addr: options.addr,
  };
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
