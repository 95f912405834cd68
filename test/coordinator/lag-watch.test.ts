import { test } from "node:test";
import assert from "node:assert/strict";
import { LagWatch, type ReplicaWrite } from "../../src/coordinator/lag-watch.js";

/** A replica write whose progress the test sets by hand. */
function write(): ReplicaWrite & { at: number; wasCut: boolean } {
  const w = {
    at: 0,
    wasCut: false,
    progress: () => w.at,
    cut: () => {
      w.wasCut = true;
    },
  };
  return w;
}

void test("a replica behind the others with no progress for the write timeout is cut; the others are not", () => {
  let now = 0;
  const watch = new LagWatch(1000, () => now);
  const [a, b] = [write(), write()];
  const entry = watch.start([a, b]);
  a.at = b.at = 1024; // both took the whole body
  watch.sweep();
  a.at = Infinity; // a answered (durable); b is frozen from now on
  for (now = 250; now <= 5000 && !b.wasCut; now += 250) watch.sweep();
  assert.equal(a.wasCut, false);
  assert.equal(b.wasCut, true);
  assert.ok(now - 250 <= 1500, `cut ${now - 250} ms after it fell behind (at most 1.5 × the timeout)`);
  watch.stop(entry);
  watch.close();
});

void test("a slowdown every replica shares cuts nobody; a replica that keeps moving is not cut", () => {
  let now = 0;
  const watch = new LagWatch(1000, () => now);
  const [a, b, c] = [write(), write(), write()];
  const entry = watch.start([a, b, c]);
  for (now = 0; now <= 20_000; now += 250) {
    // a and b stall together (a shared slow disk); c streams far behind the others but never stops.
    if (now < 1000) a.at = b.at = now;
    c.at = now / 100;
    watch.sweep();
  }
  assert.deepEqual([a.wasCut, b.wasCut, c.wasCut], [false, false, false]);
  // c stops moving while behind: cut.
  const stoppedAt = now;
  for (; now <= stoppedAt + 5000 && !c.wasCut; now += 250) watch.sweep();
  assert.equal(c.wasCut, true);
  assert.equal(a.wasCut || b.wasCut, false);
  watch.stop(entry);
  // A failed write (negative progress) is out of the race: it is never ahead of anyone, nor cut.
  const [d, e] = [write(), write()];
  watch.start([d, e]);
  d.at = -1;
  for (now = 0; now < 10_000; now += 250) watch.sweep();
  assert.deepEqual([d.wasCut, e.wasCut], [false, false]);
  watch.close();
});

void test("a single write has nobody to fall behind and is not watched", () => {
  const watch = new LagWatch(1000, () => 0);
  assert.equal(watch.start([write()]), undefined);
  watch.close();
});
