import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { EmbeddedQueue } from "../../src/queue/embedded.js";
import { openQueue } from "../../src/queue/open.js";
import { tempDir } from "../helpers/tmp.js";
import { startProcess } from "../helpers/process.js";
import { waitFor } from "../helpers/wait.js";
import { queueSuite, sampleTask } from "./queue-suite.js";

queueSuite("embedded", async (t, options) => {
  const q = await openQueue({ dir: await tempDir(t) }, options);
  t.after(() => q.stop());
  return q;
});

void test("embedded: state survives a clean restart, leases do not", async (t) => {
  const dir = await tempDir(t);
  const q1 = await openQueue({ dir }, { maxAttempts: 1 });
  await q1.push([sampleTask(1), sampleTask(2), sampleTask(3)]);
  const leased = await q1.lease(3, 60_000);
  assert.equal(leased.length, 3);
  await q1.ack([leased[0]?.id ?? ""]);
  await q1.fail(leased[1]?.id ?? "", "boom");
  await q1.stop();
  const q2 = await openQueue({ dir });
  t.after(() => q2.stop());
  const s = await q2.stats();
  assert.equal(s.depth, 1);
  assert.equal(s.deadLetters, 1);
  const again = await q2.lease(5, 60_000);
  assert.deepEqual(
    again.map((l) => l.id),
    [leased[2]?.id],
  );
});

void test("embedded: the log is rewritten and stays loadable", async (t) => {
  const dir = await tempDir(t);
  const q = new EmbeddedQueue(dir);
  await q.start();
  // Enough churn (push + ack) to pass the rewrite threshold several times.
  const big = "k".repeat(900);
  for (let round = 0; round < 40; round++) {
    await q.push(Array.from({ length: 200 }, (_, i) => sampleTask(i, { key: `${big}-${round}-${i}` })));
    const leased = await q.lease(200, 60_000);
    await q.ack(leased.slice(0, 199).map((l) => l.id));
  }
  await q.stop();
  const q2 = await openQueue({ dir });
  t.after(() => q2.stop());
  assert.equal((await q2.stats()).depth, 40);
  const { stat } = await import("node:fs/promises");
  const size = (await stat(`${dir}/queue.log`)).size;
  assert.ok(size < 8 << 20, `log was compacted (${size} bytes)`);
});

void test("embedded: acknowledged pushes survive SIGKILL", async (t) => {
  const dir = await tempDir(t);
  const report = join(await tempDir(t), "pushed");
  const script = fileURLToPath(new URL("./embedded-writer.js", import.meta.url));
  const child = await startProcess(t, { command: script, args: [dir, report], ready: /^ready$/m });
  const reported = (): string => (existsSync(report) ? readFileSync(report, "utf8") : "");
  // Kill while it keeps pushing: every batch it reported as pushed must be there afterwards.
  await waitFor(() => batchesIn(reported()) >= 5, { what: "several batches" });
  await child.kill("SIGKILL");
  assert.equal(child.proc?.signalCode, "SIGKILL", "the writer was killed, not stopped by itself");
  const last = batchesIn(reported());
  const q = await openQueue({ dir });
  t.after(() => q.stop());
  const depth = (await q.stats()).depth;
  assert.ok(depth >= last * 10, `depth ${depth} ≥ ${last * 10} acknowledged tasks`);
  const all = await q.lease(100_000, 60_000);
  const keys = new Set(all.map((l) => l.task?.key));
  for (let b = 1; b <= last; b++)
    for (let i = 0; i < 10; i++) assert.ok(keys.has(`b${b}-${i}`), `b${b}-${i}`);
});

function batchesIn(report: string): number {
  return Math.max(0, ...[...report.matchAll(/pushed (\d+)/g)].map((m) => Number(m[1])));
}
