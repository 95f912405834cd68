import { join } from "node:path";
import type { TestContext } from "node:test";
import { startProcess, type ChildHandle } from "./process.js";
import { tempDir } from "./tmp.js";

/** `backpack dev` as a user starts it, on free ports with its data in a temp dir; stopped after the test. */
export async function startEmbedded(
  t: Pick<TestContext, "after">,
): Promise<{ cluster: ChildHandle; data: string }> {
  const data = join(await tempDir(t), "data");
  const cluster = await startProcess(t, {
    command: "backpack",
    args: ["dev", "--data", data, "--port", "0"],
    ready: /backpack is ready/,
  });
  return { cluster, data };
}
