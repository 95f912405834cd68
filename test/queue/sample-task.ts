import type { ReplicationTask } from "../../src/queue/types.js";

/** A well-formed copy task; `n` makes the key unique. */
export function sampleTask(n: number, overrides: Partial<ReplicationTask> = {}): ReplicationTask {
  return {
    op: "copy",
    shard: "1",
    sources: ["a"],
    target: "b",
    key: `file-${n}.bin`,
    crc: "0a1b2c3d",
    size: 1024,
    createdAt: Date.now(),
    ...overrides,
  };
}
