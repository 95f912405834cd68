import { hash32 } from "./hash.js";
import type { StatusCode, Update } from "./messages.js";

export type MemberStatus = "alive" | "suspect" | "dead" | "left";

export const STATUS_NAMES: readonly MemberStatus[] = ["alive", "suspect", "dead", "left"];

export interface Member {
  readonly id: string;
  readonly addr: string;
  readonly incarnation: number;
  readonly status: MemberStatus;
  readonly meta: Readonly<Record<string, string>>;
  /** Local time (ms) of the last status change here: for tombstone reaping and the view. */
  readonly changedAt: number;
}

/** What an applied update did. */
export interface Change {
  member: Member;
  previous: Member | undefined;
}

/**
 * The member table: one last-writer-wins register per member, ordered by (incarnation, status) with
 * alive < suspect < dead < left at equal incarnation. Because that order is total and merges take the
 * maximum, any two tables that have seen the same updates are equal whatever the order, which is what lets
 * anti-entropy converge and the checksum compare views.
 *
 * The checksum is an XOR of per-member hashes, updated in O(1) per change (a sorted re-hash of 1000 members
 * on every change would dominate the simulator).
 */
export class MemberTable {
  private readonly byId = new Map<string, Member>();
  private sum = 0;

  get checksum(): number {
    return this.sum >>> 0;
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Member | undefined {
    return this.byId.get(id);
  }

  all(): IterableIterator<Member> {
    return this.byId.values();
  }

  /** Applies an update if it is newer than what the table holds; returns the change, or undefined. */
  apply(u: Update, now: number): Change | undefined {
    const previous = this.byId.get(u.id);
    if (previous && !isNewer(u, previous)) return undefined;
    const member: Member = {
      id: u.id,
      addr: u.a,
      incarnation: u.i,
      status: STATUS_NAMES[u.s] as MemberStatus,
      meta: u.m ?? (previous && previous.incarnation === u.i ? previous.meta : {}),
      changedAt: now,
    };
    this.set(member, previous);
    return { member, previous };
  }

  /** Forgets a member (a reaped tombstone). */
  remove(id: string): void {
    const m = this.byId.get(id);
    if (!m) return;
    this.sum ^= entryHash(m);
    this.byId.delete(id);
  }

  private set(member: Member, previous: Member | undefined): void {
    if (previous) this.sum ^= entryHash(previous);
    this.sum ^= entryHash(member);
    this.byId.set(member.id, member);
  }
}

export function statusCode(status: MemberStatus): StatusCode {
  return STATUS_NAMES.indexOf(status) as StatusCode;
}

export function toUpdate(m: Member, by?: string): Update {
  const u: Update = { id: m.id, a: m.addr, i: m.incarnation, s: statusCode(m.status) };
  if (Object.keys(m.meta).length > 0) u.m = { ...m.meta };
  if (by !== undefined) u.by = by;
  return u;
}

/** True when `u` wins over `m` in the (incarnation, status) order. */
export function isNewer(u: Update, m: Member): boolean {
  if (u.i !== m.incarnation) return u.i > m.incarnation;
  return u.s > statusCode(m.status);
}

export function isLive(status: MemberStatus): boolean {
  return status === "alive" || status === "suspect";
}

function entryHash(m: Member): number {
  return hash32(`${m.id}\u0000${m.incarnation}\u0000${m.status}`);
}
