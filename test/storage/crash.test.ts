import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { cp, readdir, watch } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openStore } from "../../src/storage/store.js";
import type { ReadableBody, Store } from "../../src/storage/types.js";
import { startProcess, type ChildHandle } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { bodyFor, prng } from "./fixtures/crash-body.js";

const WORKER = fileURLToPath(new URL("./fixtures/crash-worker.js", import.meta.url));
const CYCLES = 32;

type KeyState = { kind: "absent" } | { kind: "put"; version: string; size: number };
type Op = { kind: "D"; key: string } | { kind: "P"; key: string; version: string; size: number };

function parseOp(parts: string[]): Op {
  const [kind, key, version, size] = parts;
  if (kind === "D") return { kind: "D", key: key! };
  return { kind: "P", key: key!, version: version!, size: Number(size) };
}

function resultOf(op: Op): KeyState {
  return op.kind === "D" ? { kind: "absent" } : { kind: "put", version: op.version, size: op.size };
}

async function bodyBytes(body: ReadableBody): Promise<Buffer> {
  if (body.kind === "buffer") return body.data;
  const chunks: Buffer[] = [];
  for await (const c of body.stream) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Does the store's current state of `key` equal `state`? */
async function holds(store: Store, key: string, state: KeyState): Promise<boolean> {
  const info = store.stat(key);
  if (state.kind === "absent") return info === undefined;
  if (info?.size !== state.size) return false;
  const { body } = await store.read(key);
  return (await bodyBytes(body)).equals(bodyFor(key, state.version, state.size));
}

void test("SIGKILL at random moments under concurrent puts, deletes and compaction loses nothing acknowledged", async (t) => {
  const dir = await tempDir(t, "backpack-crash-");
  const transcripts = await tempDir(t, "backpack-crash-transcripts-");
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1e9);
  const rnd = prng(seed);
  const model = new Map<string, KeyState>();
  let killedCompacting = 0;
  let copiesCut = 0;
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const transcript = join(transcripts, `cycle-${cycle}`);
      const child: ChildHandle = await startProcess(t, {
        command: WORKER,
        args: [dir, String(cycle), String(Math.floor(rnd() * 1e9)), transcript],
        ready: /^R$/m,
      });
      const written = (): string => readFileSync(transcript, "utf8");
      // The worker is gone (and nothing more reaches its transcript) once its process has closed.
      const closed = once(child.proc!, "close");
      const duringCompaction = cycle % 3 === 0;
      const acked = () => (written().match(/^A /gm) ?? []).length;
      // Let some work be acknowledged first, so every cycle tests something.
      const minAcks = 20 + Math.floor(rnd() * 300);
      await waitFor(() => acked() >= minAcks || !child.running, {
        timeoutMs: 60_000,
        what: "acknowledged ops",
      });
      if (duringCompaction) {
        // Kill the moment a compaction starts writing its copy (or after a while if none does: no timing fails).
        const stop = new AbortController();
        const watcher = watch(join(dir, "volumes"), { signal: stop.signal });
        await Promise.race([
          (async () => {
            for await (const e of watcher) if (e.filename?.endsWith(".compact")) return;
          })().catch(() => undefined),
          sleep(5_000, undefined, { signal: stop.signal }).catch(() => undefined),
        ]);
        child.proc?.kill("SIGKILL");
        stop.abort();
      }
      await child.kill("SIGKILL");
      await closed;
      assert.equal(
        child.proc?.signalCode,
        "SIGKILL",
        `the worker died by itself:\n${child.stderr.slice(-2000)}`,
      );
      if (duringCompaction) killedCompacting++;
      if ((await readdir(join(dir, "volumes"))).some((n) => n.endsWith(".compact"))) copiesCut++;

      // Replay the transcript: the model takes every acknowledged op; the op each worker had in flight may or
      // may not have reached the disk.
      const inflight = new Map<string, Op>();
      const lines = written().split("\n");
      lines.pop(); // a line cut by the kill
      for (const line of lines) {
        const parts = line.split(" ");
        if (parts[0] === "B") inflight.set(parts[2]!, parseOp(parts.slice(1)));
        if (parts[0] === "A") {
          const op = parseOp(parts.slice(1));
          model.set(op.key, resultOf(op));
          inflight.delete(op.key);
        }
      }

      const store = await openStore({ dir, volumeMaxBytes: 96 << 10, maxBufferedBytes: 24 << 10 });
      try {
        let present = 0;
        for (const key of new Set([...model.keys(), ...inflight.keys()])) {
          const before = model.get(key) ?? { kind: "absent" };
          const op = inflight.get(key);
          let now: KeyState | undefined;
          if (await holds(store, key, before)) now = before;
          else if (op && (await holds(store, key, resultOf(op)))) now = resultOf(op);
          assert.ok(
            now,
            `seed ${seed} cycle ${cycle}: ${key} should be ${JSON.stringify(before)} (in flight: ${JSON.stringify(op)}), store has ${JSON.stringify(store.stat(key))}`,
          );
          model.set(key, now);
          if (now.kind === "put") present++;
        }
        const stats = store.stats();
        assert.equal(stats.objects, present, `cycle ${cycle}: objects in the store`);
        assert.equal(stats.checksumErrors, 0);
      } finally {
        await store.close();
      }
    }
  } catch (err) {
    // CRASH_KEEP=<path>: keep the data dir and the transcripts of a failed run for inspection.
    if (process.env.CRASH_KEEP) {
      await cp(dir, `${process.env.CRASH_KEEP}-${seed}`, { recursive: true });
      await cp(transcripts, `${process.env.CRASH_KEEP}-${seed}-transcripts`, { recursive: true });
    }
    throw err;
  }
  assert.ok(killedCompacting >= 10);
  t.diagnostic(
    `${CYCLES} kills, ${killedCompacting} as a compaction began, ${copiesCut} with a compaction copy cut short`,
  );
});
