/**
 * The ring's wire messages and their validation. Everything a peer sends passes `parseMessage` before it
 * touches the member table: a frame that decodes as JSON but has the wrong shape is refused here, so a
 * malformed or hostile message can never corrupt the table.
 */

/** Member status on the wire: 0 alive, 1 suspect, 2 dead, 3 left (the order is the precedence order). */
export type StatusCode = 0 | 1 | 2 | 3;

/** One member's state as gossiped: the last-writer-wins register of that member. */
export interface Update {
  id: string;
  /** host:port of the member's ring listener. */
  a: string;
  /** Incarnation: only the member itself raises it (to refute, to change metadata, to rejoin). */
  i: number;
  s: StatusCode;
  m?: Record<string, string>;
  /** Who raised this suspicion or death (Lifeguard counts distinct ones as confirmations). */
  by?: string;
}

/**
 * The token's running totals since it was created: every hand-over adds one hop and the time its sender held
 * it (each member's own clock), so a member splits its lap into holding and transit from two receipts.
 */
export interface TokenTotals {
  hops: number;
  held: number;
  /** The last sender and when it sent, its wall clock, ms (only comparable between members sharing a clock). */
  last?: { id: string; sent: number };
}

interface Base {
  from: string;
  /** The sender's listen address, so an unknown sender (a joiner, the other side of a partition) can be answered. */
  fa: string;
}

export type Message =
  | (Base & { t: "ping"; seq: number; cs: number; upd?: Update[] })
  | (Base & { t: "ack"; seq: number; cs: number; upd?: Update[] })
  | (Base & { t: "ping-req"; seq: number; target: string; ta: string })
  | (Base & { t: "nack"; seq: number })
  | (Base & { t: "join"; me: Update })
  | (Base & { t: "sync"; reply: boolean; members: Update[]; bids: Array<[string, number]> })
  | (Base & { t: "gossip"; upd: Update[]; hops: number })
  | (Base & { t: "bcast"; origin: string; seq: number; hops: number; data: unknown })
  | (Base & { t: "token"; epoch: number; origin: string; tick: number } & TokenTotals);

export type MessageType = Message["t"];

export const LIMITS = {
  idChars: 256,
  addrChars: 300,
  metaEntries: 32,
  metaChars: 1024,
  membersPerSync: 100_000,
  updatesPerGossip: 4096,
  bids: 4096,
} as const;

const isStr = (v: unknown, max: number): v is string =>
  typeof v === "string" && v.length > 0 && v.length <= max;
const isU32 = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export function parseUpdate(v: unknown): Update | undefined {
  if (!isObj(v)) return undefined;
  const { id, a, i, s, m, by } = v;
  if (!isStr(id, LIMITS.idChars) || !isStr(a, LIMITS.addrChars) || !isU32(i)) return undefined;
  if (s !== 0 && s !== 1 && s !== 2 && s !== 3) return undefined;
  if (by !== undefined && !isStr(by, LIMITS.idChars)) return undefined;
  const u: Update = { id, a, i, s };
  if (m !== undefined) {
    const meta = parseMeta(m);
    if (!meta) return undefined;
    u.m = meta;
  }
  if (by !== undefined) u.by = by;
  return u;
}

export function parseMeta(v: unknown): Record<string, string> | undefined {
  if (!isObj(v)) return undefined;
  const entries = Object.entries(v);
  if (entries.length > LIMITS.metaEntries) return undefined;
  let chars = 0;
  const out: Record<string, string> = {};
  for (const [k, val] of entries) {
    if (typeof val !== "string") return undefined;
    chars += k.length + val.length;
    if (chars > LIMITS.metaChars || k === "__proto__") return undefined;
    out[k] = val;
  }
  return out;
}

function parseUpdates(v: unknown, max: number): Update[] | undefined {
  if (!Array.isArray(v) || v.length > max) return undefined;
  const out: Update[] = [];
  for (const x of v) {
    const u = parseUpdate(x);
    if (!u) return undefined;
    out.push(u);
  }
  return out;
}

/** A message of the right shape, or undefined (the caller counts it and closes the connection). */
export function parseMessage(v: unknown): Message | undefined {
  if (!isObj(v)) return undefined;
  const { t, from, fa } = v;
  if (!isStr(from, LIMITS.idChars) || !isStr(fa, LIMITS.addrChars)) return undefined;
  const base = { from, fa };
  switch (t) {
    case "ping":
    case "ack": {
      if (!isU32(v.seq) || !isU32(v.cs)) return undefined;
      const upd = v.upd === undefined ? undefined : parseUpdates(v.upd, 16);
      if (v.upd !== undefined && !upd) return undefined;
      return { ...base, t, seq: v.seq, cs: v.cs, ...(upd ? { upd } : {}) };
    }
    case "ping-req":
      if (!isU32(v.seq) || !isStr(v.target, LIMITS.idChars) || !isStr(v.ta, LIMITS.addrChars))
        return undefined;
      return { ...base, t, seq: v.seq, target: v.target, ta: v.ta };
    case "nack":
      return isU32(v.seq) ? { ...base, t, seq: v.seq } : undefined;
    case "join": {
      const me = parseUpdate(v.me);
      return me ? { ...base, t, me } : undefined;
    }
    case "sync": {
      const members = parseUpdates(v.members, LIMITS.membersPerSync);
      const bids = parseBids(v.bids);
      if (!members || !bids || typeof v.reply !== "boolean") return undefined;
      return { ...base, t, reply: v.reply, members, bids };
    }
    case "gossip": {
      const upd = parseUpdates(v.upd, LIMITS.updatesPerGossip);
      return upd && isU32(v.hops) ? { ...base, t, upd, hops: v.hops } : undefined;
    }
    case "bcast":
      if (!isStr(v.origin, LIMITS.idChars) || !isU32(v.seq) || !isU32(v.hops) || !("data" in v))
        return undefined;
      return { ...base, t, origin: v.origin, seq: v.seq, hops: v.hops, data: v.data };
    case "token": {
      if (!isU32(v.epoch) || !isStr(v.origin, LIMITS.idChars) || !isU32(v.tick)) return undefined;
      if (!Number.isSafeInteger(v.hops) || (v.hops as number) < 0) return undefined;
      if (typeof v.held !== "number" || !Number.isFinite(v.held) || v.held < 0) return undefined;
      const token = {
        ...base,
        t,
        epoch: v.epoch,
        origin: v.origin,
        tick: v.tick,
        hops: v.hops as number,
        held: v.held,
      };
      if (v.last === undefined) return token;
      const l = v.last;
      if (
        !isObj(l) ||
        !isStr(l.id, LIMITS.idChars) ||
        typeof l.sent !== "number" ||
        !Number.isFinite(l.sent)
      ) {
        return undefined;
      }
      return { ...token, last: { id: l.id, sent: l.sent } };
    }
    default:
      return undefined;
  }
}

function parseBids(v: unknown): Array<[string, number]> | undefined {
  if (!Array.isArray(v) || v.length > LIMITS.bids) return undefined;
  const out: Array<[string, number]> = [];
  for (const x of v as unknown[]) {
    if (!Array.isArray(x) || x.length !== 2 || !isStr(x[0], LIMITS.idChars) || !isU32(x[1])) return undefined;
    out.push([x[0], x[1]]);
  }
  return out;
}
