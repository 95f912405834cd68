import type { Logger } from "../common/logger.js";
import type { ClusterSnapshot } from "./types.js";

/** The `onChange` subscribers of a cluster map; a throwing listener is logged and does not stop the others. */
export class ChangeListeners {
  private readonly listeners = new Set<(snapshot: ClusterSnapshot) => void>();

  constructor(private readonly log: Logger) {}

  add(listener: (snapshot: ClusterSnapshot) => void): () => void {
    // A wrapper, so that the same function subscribed twice gets two independent subscriptions.
    const entry = (snapshot: ClusterSnapshot): void => listener(snapshot);
    this.listeners.add(entry);
    return () => this.listeners.delete(entry);
  }

  emit(snapshot: ClusterSnapshot): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(snapshot);
      } catch (err) {
        this.log.error({ err }, "cluster map listener failed");
      }
    }
  }
}
