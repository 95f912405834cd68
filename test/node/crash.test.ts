import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { Agent, request } from "undici";
import { startProcess } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

/**
 * What a key may hold after a crash: its last acknowledged state, or the outcome of the one operation that
 * was in flight when the node died (keys are owned by one worker, so at most one op per key is in flight).
 * `null` means absent (deleted or never written).
 */
interface KeyState {
  acked: Buffer | null;
  pending: { value: Buffer | null } | undefined;
}

const WORKERS = 8;
const KEYS_PER_WORKER = 6;
const CYCLES = 32;
const SIZES = [0, 1, 700, 4096, 20_000, 70_000];

void test("SIGKILL under concurrent PUT/DELETE load, during compaction too: nothing acknowledged is lost", async (t) => {
  const dir = join(await tempDir(t, "backpack-crash-"), "data");
  // Tiny volumes and an eager compaction threshold, so volumes roll and get compacted all the time.
  const child = await startProcess(t, {
    command: "backpack",
    args: ["node", dir, "127.0.0.1", "0", "--volume-size", "256kb", "--compact-ratio", "0.3"],
  });
  const keys = new Map<string, KeyState>();
  for (let w = 0; w < WORKERS; w++) {
    for (let k = 0; k < KEYS_PER_WORKER; k++) keys.set(`w${w}/key-${k}`, { acked: null, pending: undefined });
  }
  let ackedWrites = 0;
  let ackedDeletes = 0;
  let compactions = 0;
  let killedWithPending = 0;
  let killedDuringCompaction = 0;

  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const base = child.url;
    const agent = new Agent({ connections: WORKERS });
    let acksThisCycle = 0;
    let stop = false;
    const worker = async (w: number): Promise<void> => {
      while (!stop) {
        const key = `w${w}/key-${randomInt(KEYS_PER_WORKER)}`;
        const state = keys.get(key) as KeyState;
        const del = state.acked !== null && randomInt(4) === 0;
        const value = del ? null : randomBytes(SIZES[randomInt(SIZES.length)] as number);
        state.pending = { value };
        try {
          const res = await request(`${base}/${key}`, {
            method: del ? "DELETE" : "PUT",
            body: value ?? undefined,
            dispatcher: agent,
          });
          await res.body.dump();
          assert.equal(res.statusCode, del ? 204 : 201, `${del ? "DELETE" : "PUT"} ${key}`);
        } catch (err) {
          if (stop) return; // the node was killed under this request: its outcome is unknown
          throw err;
        }
        state.acked = value;
        state.pending = undefined;
        if (del) ackedDeletes++;
        else ackedWrites++;
        acksThisCycle++;
      }
    };
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
    // Kill after a random amount of acknowledged work (a moment chosen by the load, not by a clock).
    const target = randomInt(5, 120);
    await waitFor(() => acksThisCycle >= target, {
      intervalMs: 1,
      timeoutMs: 30_000,
      what: `${target} acks`,
    });
    const stats = await request(`${base}/stats`, { dispatcher: agent });
    compactions += ((await stats.body.json()) as { store: { compactions: number } }).store.compactions;
    stop = true;
    await child.kill("SIGKILL");
    // A compaction copy left behind by the kill (the store removes it on start).
    const files = await readdir(join(dir, "volumes")).catch(() => [] as string[]);
    if (files.some((f) => f.endsWith(".compact"))) killedDuringCompaction++;
    await Promise.all(workers);
    await agent.destroy();
    killedWithPending += [...keys.values()].filter((s) => s.pending).length;

    await child.start(); // must start cleanly on whatever the kill left behind
    const verify = new Agent({ connections: 8 });
    for (const [key, state] of keys) {
      const res = await request(`${child.url}/${key}`, { dispatcher: verify });
      const body = Buffer.from(await res.body.arrayBuffer());
      assert.ok(
        res.statusCode === 200 || res.statusCode === 404,
        `${key}: status ${res.statusCode} after cycle ${cycle}`,
      );
      const seen = res.statusCode === 404 ? null : body;
      const allowed = [state.acked, ...(state.pending ? [state.pending.value] : [])];
      assert.ok(
        allowed.some((v) => (v === null ? seen === null : seen !== null && v.equals(seen))),
        `${key} after cycle ${cycle}: got ${seen === null ? "absent" : `${seen.length} bytes`}, ` +
          `acked ${state.acked === null ? "absent" : `${state.acked.length} bytes`}` +
          (state.pending
            ? `, in flight ${state.pending.value === null ? "delete" : `${state.pending.value.length} bytes`}`
            : ""),
      );
      state.acked = seen;
      state.pending = undefined;
    }
    await verify.destroy();
  }
  t.diagnostic(
    `${CYCLES} kills, ${ackedWrites} acknowledged writes, ${ackedDeletes} acknowledged deletes, ` +
      `${killedWithPending} ops in flight at a kill, ${compactions} compactions seen before kills, ` +
      `${killedDuringCompaction} kills in the middle of a compaction copy`,
  );
  assert.ok(ackedWrites > CYCLES * 5);
  assert.ok(ackedDeletes > 0);
  assert.ok(compactions > 0, "compaction ran during the load");
});
