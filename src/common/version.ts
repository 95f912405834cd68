import { checksum } from "./checksum.js";

/**
 * The version of a write or delete: one total order that every replica agrees on, carried by every copy.
 *
 * `stamp` is a hybrid logical clock reading in microseconds since the epoch: the stamping process's wall clock,
 * moved past every version it has stamped or seen (so a process never stamps twice the same value, and a
 * write made after one it has seen is always newer). `origin` is a 16-bit id of the stamping process (derived
 * from its name), the tie-breaker when two processes stamp the same microsecond.
 *
 * Order: stamp, then origin. Wire form (`X-Backpack-Version`): the stamp as 16 decimal digits, `-`, the origin
 * as 4 hex digits, e.g. `1764823935123456-00a3`; fixed width, so the texts sort as the versions do.
 */
export interface Version {
  /** µs since the epoch, below 2^53. */
  stamp: number;
  /** 0-65535. */
  origin: number;
}

export const VERSION_HEADER = "x-backpack-version";
/** On a node's HEAD of a damaged record (quarantined until repair restores it). */
export const DAMAGED_HEADER = "x-backpack-damaged";

/** Negative when `a` is older than `b`, 0 when equal, positive when newer. */
export function compareVersions(a: Version, b: Version): number {
  return a.stamp !== b.stamp ? a.stamp - b.stamp : a.origin - b.origin;
}

export function formatVersion(v: Version): string {
  return `${String(v.stamp).padStart(16, "0")}-${v.origin.toString(16).padStart(4, "0")}`;
}

const VERSION_TEXT = /^(\d{1,16})-([0-9a-f]{4})$/i;

/** The version a text names, or undefined when it is not one. */
export function parseVersion(text: string | undefined): Version | undefined {
  if (text === undefined) return undefined;
  const m = VERSION_TEXT.exec(text.trim());
  if (!m) return undefined;
  const stamp = Number(m[1]);
  if (!Number.isSafeInteger(stamp)) return undefined;
  return { stamp, origin: parseInt(m[2]!, 16) };
}

/** The version of a record written before versions existed: its write time (ms), origin 0. */
export function legacyVersion(writeTimeMs: number): Version {
  return { stamp: writeTimeMs * 1000, origin: 0 };
}

/** The write time in ms a version stands for (what `Last-Modified` shows). */
export function versionTimeMs(v: Version): number {
  return Math.floor(v.stamp / 1000);
}

/** A stable 16-bit origin id for a process name (a coordinator's URL, a node's address). */
export function originOf(name: string): number {
  return checksum(Buffer.from(name, "utf8")) & 0xffff;
}

/**
 * A hybrid logical clock: `next()` is strictly greater than every stamp it returned or `observe`d before,
 * and follows the wall clock when that is ahead. Pure apart from the injected clock.
 */
export class HybridClock {
  private last = 0;

  constructor(
    readonly origin: number,
    /** Wall clock in µs since the epoch. */
    private readonly nowUs: () => number = wallClockUs,
  ) {}

  next(): Version {
    const now = Math.floor(this.nowUs());
    this.last = now > this.last ? now : this.last + 1;
    return { stamp: this.last, origin: this.origin };
  }

  /** Moves the clock past a version seen elsewhere (a node holding a newer write, a copy). */
  observe(v: Version): void {
    if (v.stamp > this.last) this.last = v.stamp;
  }
}

/** ms to add to `performance.now()` to get the wall clock; re-synced whenever the two drift apart. */
let offsetMs = performance.timeOrigin;

/**
 * Wall clock in µs with sub-millisecond resolution: the monotonic `performance.now()` (µs resolution) kept
 * within a millisecond of `Date.now()` (which follows the system clock, NTP included, but has whole ms). Two
 * writes one after the other on one machine thus get increasing stamps, even within one millisecond.
 */
export function wallClockUs(): number {
  const mono = performance.now();
  const wall = Date.now();
  const est = offsetMs + mono;
  if (est < wall - 1 || est > wall + 1) offsetMs = wall + 0.5 - mono;
  return (offsetMs + mono) * 1000;
}
