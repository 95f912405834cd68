/**
 * Which storage nodes this coordinator has recently seen failing (refused connection, timeout, 5xx). A suspect
 * node is not dropped: it is only tried after the healthy replicas, so one failure costs one slow attempt and
 * not one per request. Any success clears the suspicion; so does time (`suspectMs`), so a node that came back
 * is used again even when nothing probes it. An outside source (the ring) can mark nodes down as well.
 *
 * Time is injected (`now`), so the rules are testable without waiting.
 */
export class NodeHealth {
  private readonly failedAt = new Map<string, number>();
  private readonly down = new Set<string>();

  constructor(
    private readonly suspectMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  recordFailure(serverId: string): void {
    this.failedAt.set(serverId, this.now());
  }

  recordSuccess(serverId: string): void {
    this.failedAt.delete(serverId);
  }

  /** Membership's view (the ring): a node it reports dead stays suspect until it reports it alive. */
  setDown(serverId: string, isDown: boolean): void {
    if (isDown) this.down.add(serverId);
    else this.down.delete(serverId);
  }

  isSuspect(serverId: string): boolean {
    if (this.down.has(serverId)) return true;
    const at = this.failedAt.get(serverId);
    if (at === undefined) return false;
    if (this.now() - at >= this.suspectMs) {
      this.failedAt.delete(serverId);
      return false;
    }
    return true;
  }

  /** Server ids currently suspect (for /stats and logs). */
  suspects(): string[] {
    const ids = new Set([...this.down, ...[...this.failedAt.keys()].filter((id) => this.isSuspect(id))]);
    return [...ids].sort();
  }
}
