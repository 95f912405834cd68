import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../common/logger.js";
import type { IndexTable } from "./index-table.js";

const FILE = "quarantine.json";

type Listed = { key: string; volume: number; offset: number };

/**
 * `quarantine.json`: the records known damaged, so that a restart does not forget them before repair restores
 * them. Each is named by key, volume and offset: an entry that points elsewhere since was replaced.
 */
export class QuarantineFile {
  private saving: Promise<void> | undefined;
  private dirty = false;

  constructor(
    private readonly dir: string,
    private readonly index: IndexTable,
    private readonly log: Logger,
  ) {}

  /** Marks the listed records damaged again where the index still points at them. */
  async load(): Promise<void> {
    let listed: Listed[];
    try {
      listed = JSON.parse(await readFile(join(this.dir, FILE), "utf8")) as Listed[];
    } catch {
      return; // none yet, or unreadable: the scrub finds them again
    }
    for (const q of Array.isArray(listed) ? listed : []) {
      const i = this.index.find(Buffer.from(String(q.key), "utf8"));
      if (i >= 0 && this.index.volumeOf(i) === q.volume && this.index.offsetOf(i) === q.offset) {
        this.index.markDamaged(i);
      }
    }
  }

  /** Writes the damaged records still current (one write at a time; the last state wins). */
  save(): void {
    if (this.saving) {
      this.dirty = true;
      return;
    }
    const damaged: Listed[] = [];
    this.index.forEach((i) => {
      if (this.index.isDamaged(i)) {
        const key = Buffer.from(this.index.keyOf(i)).toString("utf8");
        damaged.push({ key, volume: this.index.volumeOf(i), offset: this.index.offsetOf(i) });
      }
    });
    const path = join(this.dir, FILE);
    this.saving = writeFile(`${path}.tmp`, JSON.stringify(damaged))
      .then(() => rename(`${path}.tmp`, path))
      .catch((err: unknown) => this.log.warn({ err }, "could not save the list of damaged records"))
      .finally(() => {
        this.saving = undefined;
        if (this.dirty) {
          this.dirty = false;
          this.save();
        }
      });
  }

  /** Resolves once no write is under way. */
  async idle(): Promise<void> {
    while (this.saving) await this.saving;
  }
}
