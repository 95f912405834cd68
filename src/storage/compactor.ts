import type { Writer } from "./writer.js";

/** Compaction (in progress). */
export class Compactor {
  completed = 0;
  constructor(
    readonly store: unknown,
    readonly writer: Writer,
  ) {}
  poke(): void {}
  async run(): Promise<void> {}
  async stop(): Promise<void> {}
}
