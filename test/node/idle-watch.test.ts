import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { IdleWatch, type IdleEntry } from "../../src/common/idle-watch.js";

/** A watch on a clock the test moves; the sweep itself runs on real timers (every 5 ms here). */
function watchOnClock(idleMs: number): { watch: IdleWatch; clock: { t: number } } {
  const clock = { t: 0 };
  return { watch: new IdleWatch(idleMs, () => clock.t), clock };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await sleep(5);
}

void test("IdleWatch fires once for a silent waiting entry, never before its idle time", async (t) => {
  const { watch, clock } = watchOnClock(20);
  t.after(() => watch.close());
  let fired = 0;
  watch.start(() => fired++);
  await sleep(40); // several sweeps, but the clock has not moved
  assert.equal(fired, 0);
  clock.t = 19;
  await sleep(40);
  assert.equal(fired, 0);
  clock.t = 20;
  await until(() => fired > 0);
  clock.t = 1000;
  await sleep(40);
  assert.equal(fired, 1, "an entry fires once");
});

void test("IdleWatch: touch restarts the silence, a paused or stopped entry never fires", async (t) => {
  const { watch, clock } = watchOnClock(20);
  t.after(() => watch.close());
  const fired: string[] = [];
  const touched = watch.start(() => fired.push("touched"));
  const paused = watch.start(() => fired.push("paused"));
  const stopped = watch.start(() => fired.push("stopped"));
  paused.waiting = false;
  watch.stop(stopped);
  clock.t = 15;
  watch.touch(touched);
  clock.t = 30; // 30 ms since the others started, 15 since the touch
  await sleep(40);
  assert.deepEqual(fired, []);
  clock.t = 35;
  await until(() => fired.length > 0);
  assert.deepEqual(fired, ["touched"]);
  paused.waiting = true; // waiting again, silent since 0
  await until(() => fired.length > 1);
  assert.deepEqual(fired, ["touched", "paused"]);
});

void test("IdleWatch: an entry stopped by another one's fire does not fire", async (t) => {
  const { watch, clock } = watchOnClock(20);
  t.after(() => watch.close());
  const fired: string[] = [];
  // Each one's fire stops the other: whichever the sweep takes first, the other must stay silent.
  const entries: IdleEntry[] = [];
  entries.push(
    watch.start(() => {
      fired.push("a");
      watch.stop(entries[1]!);
    }),
  );
  entries.push(
    watch.start(() => {
      fired.push("b");
      watch.stop(entries[0]!);
    }),
  );
  clock.t = 100;
  await until(() => fired.length > 0);
  await sleep(40);
  assert.equal(fired.length, 1, `one of the two fired: ${fired.join(",")}`);
});

void test("IdleWatch.close forgets every entry", async () => {
  const { watch, clock } = watchOnClock(20);
  let fired = 0;
  watch.start(() => fired++);
  watch.close();
  clock.t = 100;
  await sleep(40);
  assert.equal(fired, 0);
});

void test("IdleWatch with a minimum rate: a trickling client is cut after a window of waiting, a steady one never, busy time does not count", async (t) => {
  const clock = { t: 0 };
  // 100 bytes/s over windows of 20 ms of waiting.
  const watch = new IdleWatch(20, () => clock.t, 100);
  t.after(() => watch.close());
  const fired: string[] = [];
  const trickle = watch.start(() => fired.push("trickle"));
  const steady = watch.start(() => fired.push("steady"));
  const busy = watch.start(() => fired.push("busy"));
  watch.pause(busy); // the server is busy with what `busy` sent
  for (let step = 1; step <= 40; step++) {
    clock.t += 5;
    watch.touch(steady); // 1 byte per 5 ms: 200 bytes/s
    watch.received(steady, 1);
    if (step % 3 === 0) {
      watch.touch(trickle); // 1 byte per 15 ms: never silent for 20 ms, but 67 bytes/s
      watch.received(trickle, 1);
    }
    if (step > 20) {
      watch.touch(busy); // waited on again after 100 ms of being busy, then 200 bytes/s
      watch.received(busy, 1);
    }
    await sleep(8); // let the sweep (every 5 ms) look
  }
  await until(() => fired.length > 0);
  await sleep(20);
  assert.deepEqual(fired, ["trickle"], "only the trickling client is cut");
});
