import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

/** A fresh temp dir removed after the test (also when it fails). */
export async function tempDir(t: Pick<TestContext, "after">, prefix = "backpack-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // Retried: a store being closed by a later hook may still be finishing a file in it (ENOTEMPTY).
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }));
  return dir;
}
