import { compareVersions, type Version } from "../common/version.js";

/** Addresses remembered; about 150 bytes each (key text, map entry, version). */
const DEFAULT_CAPACITY = 100_000;

export interface AckedVersion {
  version: Version;
  /** The acknowledged operation was a delete. */
  deleted: boolean;
}

/**
 * The newest version of each `<shard>:<key>` this coordinator acknowledged lately (a write's 200, a delete's
 * 204), the oldest forgotten first. A read that fails over to a replica still serving something older (a copy
 * or a delete not yet applied there) goes on to the next replica instead of going back in time.
 */
export class AckedVersions {
  private readonly byAddress = new Map<string, AckedVersion>();

  constructor(private readonly capacity = DEFAULT_CAPACITY) {}

  note(address: string, version: Version, deleted: boolean): void {
    const known = this.byAddress.get(address);
    if (known && compareVersions(known.version, version) > 0) return;
    this.byAddress.delete(address);
    this.byAddress.set(address, { version, deleted });
    if (this.byAddress.size > this.capacity) {
      const oldest = this.byAddress.keys().next();
      if (!oldest.done) this.byAddress.delete(oldest.value);
    }
  }

  get(address: string): AckedVersion | undefined {
    return this.byAddress.get(address);
  }
}
