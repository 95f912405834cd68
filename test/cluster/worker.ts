import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import type { ClusterMapTarget } from "../../src/cluster/open.js";
import type { ClusterSnapshot } from "../../src/cluster/types.js";
import { startProcess, type ChildHandle } from "../helpers/process.js";
import { waitFor } from "../helpers/wait.js";

const WORKER = fileURLToPath(new URL("./fixtures/map-worker.js", import.meta.url));

/** A child process watching the map; `latest()` is the last snapshot it printed. */
export async function startWatcher(
  t: Pick<TestContext, "after">,
  target: ClusterMapTarget,
): Promise<{ child: ChildHandle; latest(): ClusterSnapshot | undefined }> {
  const child = await startProcess(t, {
    command: process.execPath,
    args: [WORKER, JSON.stringify(target), "watch"],
    ready: /"initialized"/,
  });
  return {
    child,
    latest() {
      const lines = child.stdout
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("{"));
      const last = lines.at(-1);
      return last ? (JSON.parse(last) as ClusterSnapshot) : undefined;
    },
  };
}

/** Runs `usage <shard> <n>` in a child process and waits for it to exit 0. */
export async function runUsageWorker(
  t: Pick<TestContext, "after">,
  target: ClusterMapTarget,
  shard: string,
  n: number,
): Promise<void> {
  const child = await startProcess(t, {
    command: process.execPath,
    args: [WORKER, JSON.stringify(target), "usage", shard, String(n)],
    ready: "none",
  });
  const code = await child.waitExit();
  if (code !== 0) throw new Error(`usage worker exited ${String(code)}:\n${child.stderr.slice(-2000)}`);
}

export async function waitForSnapshot(
  watcher: { latest(): ClusterSnapshot | undefined },
  probe: (s: ClusterSnapshot) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  await waitFor(
    () => {
      const s = watcher.latest();
      return s !== undefined && probe(s);
    },
    { what, timeoutMs },
  );
}
