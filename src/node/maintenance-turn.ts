import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../common/logger.js";
import type { ClusterView } from "../client/coordinator-client.js";
import type { RingMember } from "../ring/ring-member.js";
import { authority } from "../ring/url-watch.js";

/** Ticks (token laps) per window: each window belongs to one node of a shard, in turn. */
export const WINDOW_TICKS = 10;
/** Without a tick for this long (token lost, ring off) the gate opens: work is never held back for good. */
const STALE_TICK_MS = 30_000;
/** How often a waiting slice of work looks again. */
const POLL_MS = 100;
/** A node asks a coordinator for its shard this soon after the start (its ring has heard of them), then this often. */
const LEARN_FIRST_MS = 2_000;
const LEARN_EVERY_MS = 30_000;
/** Windows in which this node worked, kept for `/stats` (the most recent ones). */
const KEPT_WINDOWS = 32;

export interface MaintenanceTurnStats {
  /** Whether the turns are in force: the ring ticks and this node knows its shard (with other nodes). */
  scheduled: boolean;
  shard: string | null;
  /** This node's place among its shard's servers (by server id), and their number. */
  position: number | null;
  shardSize: number | null;
  tick: number | null;
  /** The windows (tick / WINDOW_TICKS) in which this node did background work lately. */
  windowsWorked: number[];
}

/**
 * The ring's tick schedules the background work that must not run on every node of a shard at once (volume
 * compaction and scrub, which read whole volumes): the ticks are cut into windows of WINDOW_TICKS laps, and
 * window w belongs to the shard's server at position w mod n (servers ordered by id). A node works only in
 * its own windows, and not in their first and last tick: every member sees the same tick within one lap, so
 * two nodes of a shard never work at once. The shard comes from a coordinator's `GET /cluster`
 * (coordinators hold the cluster map; nodes do not read it). When the schedule cannot be known (no ring, no
 * tick for 30 s, no coordinator answering, a shard of one) the work runs as without a ring.
 */
export class MaintenanceTurn {
  private ring: RingMember | undefined;
  private selfUrl = "";
  private tick: number | undefined;
  private tickAt = 0;
  private place: { shard: string; position: number; size: number } | undefined;
  private readonly worked: number[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Follows the ring's tick, and every LEARN_EVERY_MS asks a live coordinator of the ring (`viewOf`, its
   * `GET /cluster`) which shard this node (at `selfUrl`) serves.
   */
  start(ring: RingMember, selfUrl: string, viewOf: (coordinatorUrl: string) => Promise<ClusterView>): void {
    this.ring = ring;
    this.selfUrl = selfUrl;
    ring.onChange((e) => {
      if (e.type !== "tick") return;
      this.tick = e.token.tick;
      this.tickAt = this.now();
    });
    const learn = async (): Promise<void> => {
      const coordinators = ring
        .members()
        .filter((m) => m.meta.role === "coordinator" && m.status === "alive" && m.meta.url);
      for (const c of coordinators) {
        try {
          this.learn(await viewOf(c.meta.url as string));
          return;
        } catch {
          // The next one.
        }
      }
    };
    const loop = (delayMs: number): void => {
      const next = (): void => loop(this.place ? LEARN_EVERY_MS : LEARN_FIRST_MS);
      this.timer = setTimeout(() => void learn().finally(next), delayMs);
      this.timer.unref();
    };
    loop(LEARN_FIRST_MS);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Learns this node's shard and place in it from a coordinator's view of the cluster map. */
  learn(view: ClusterView): void {
    const self = authority(this.selfUrl);
    const server = view.servers.find((s) => authority(s.url) === self);
    const shard = server && view.shards.find((s) => s.servers.includes(server.id));
    if (!server || !shard) {
      this.place = undefined;
      return;
    }
    const ids = [...shard.servers].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const next = { shard: shard.id, position: ids.indexOf(server.id), size: ids.length };
    if (JSON.stringify(next) !== JSON.stringify(this.place)) {
      this.log.info(
        { shard: next.shard, position: next.position, of: next.size },
        "background work takes turns",
      );
    }
    this.place = next;
  }

  /** Resolves once this node may do background work now (see the class comment). */
  readonly wait = async (signal: AbortSignal): Promise<void> => {
    while (!this.mayWork()) await sleep(POLL_MS, undefined, { signal });
  };

  stats(): MaintenanceTurnStats {
    return {
      scheduled: this.scheduled(),
      shard: this.place?.shard ?? null,
      position: this.place?.position ?? null,
      shardSize: this.place?.size ?? null,
      tick: this.tick ?? null,
      windowsWorked: [...this.worked],
    };
  }

  private scheduled(): boolean {
    return (
      this.ring !== undefined &&
      this.place !== undefined &&
      this.place.size > 1 &&
      this.tick !== undefined &&
      this.now() - this.tickAt < STALE_TICK_MS
    );
  }

  private mayWork(): boolean {
    if (!this.scheduled()) return true;
    const tick = this.tick as number;
    const { position, size } = this.place!;
    const window = Math.floor(tick / WINDOW_TICKS);
    const phase = tick % WINDOW_TICKS;
    if (window % size !== position || phase === 0 || phase === WINDOW_TICKS - 1) return false;
    if (this.worked.at(-1) !== window) {
      this.worked.push(window);
      if (this.worked.length > KEPT_WINDOWS) this.worked.shift();
    }
    return true;
  }
}
