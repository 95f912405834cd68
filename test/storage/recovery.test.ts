import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, open, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { recordLength, RECORD_HEADER_BYTES, VOLUME_HEADER_BYTES } from "../../src/storage/record.js";
import type { DiskStore } from "../../src/storage/store.js";
import { tempDir } from "../helpers/tmp.js";
import { BIG, capturingLogger, flipByte, pattern, readAll, storeFor } from "./helpers.js";

const VOL1 = (dir: string): string => join(dir, "volumes", "00000001.vol");

void test("checkpoint + tail: only the bytes after the checkpoint are scanned, and the result is exact", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  for (let i = 0; i < 200; i++) await store.put(`k${i}`, pattern(i * 10, i), BIG);
  await store.checkpoint();
  const covered = (await stat(VOL1(dir))).size;
  await copyFile(join(dir, "index.ckpt"), join(dir, "older.ckpt"));
  for (let i = 200; i < 260; i++) await store.put(`k${i}`, pattern(i * 10, i), BIG);
  for (let i = 0; i < 20; i++) await store.put(`k${i}`, pattern(7, 1000 + i), { ...BIG, contentType: "a/b" });
  for (let i = 20; i < 40; i++) assert.equal(await store.delete(`k${i}`), true);
  await store.close();
  // As if the node had died after the first checkpoint: the newer one is lost.
  await copyFile(join(dir, "older.ckpt"), join(dir, "index.ckpt"));
  const { log, lines } = capturingLogger();
  store = await storeFor(t, dir, { log });
  t.after(() => store.close());
  const opened = lines.find((l) => l.msg === "store opened")!;
  assert.equal(opened.checkpoint, true);
  assert.equal(opened.scannedBytes, (await stat(VOL1(dir))).size - covered);
  for (let i = 0; i < 260; i++) {
    const info = store.stat(`k${i}`);
    if (i < 20) {
      assert.ok((await readAll(store, `k${i}`)).equals(pattern(7, 1000 + i)));
      assert.equal(info?.contentType, "a/b");
    } else if (i < 40) {
      assert.equal(info, undefined);
    } else {
      assert.ok((await readAll(store, `k${i}`)).equals(pattern(i * 10, i)), `k${i}`);
    }
  }
  assert.equal(store.stats().objects, 240);
});

void test("a corrupt or foreign checkpoint is ignored and the index rebuilt from the volumes", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  for (let i = 0; i < 50; i++) await store.put(`k${i}`, pattern(100, i), BIG);
  await store.close();
  const size = (await stat(join(dir, "index.ckpt"))).size;
  await flipByte(join(dir, "index.ckpt"), Math.floor(size / 2));
  const { log, lines } = capturingLogger();
  store = await storeFor(t, dir, { log });
  assert.equal(lines.find((l) => l.msg === "store opened")?.checkpoint, false);
  for (let i = 0; i < 50; i++) assert.ok((await readAll(store, `k${i}`)).equals(pattern(100, i)));
  await store.close();
  await writeFile(join(dir, "index.ckpt"), "not a checkpoint");
  store = await storeFor(t, dir);
  assert.equal(store.stats().objects, 50);
});

void test("a torn tail is detected by checksum, cut off and logged; writes continue after it", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  await store.put("a", pattern(1000, 1), BIG);
  await store.put("b", pattern(2000, 2), BIG);
  await store.put("c", pattern(3000, 3), BIG);
  await store.close();
  const endOfB = VOLUME_HEADER_BYTES + recordLength(1, 0, 1000) + recordLength(1, 0, 2000);
  // The last record half written, then junk where the rest of a batch would have gone.
  await truncate(VOL1(dir), endOfB + 1500);
  const h = await open(VOL1(dir), "a");
  await h.write(pattern(777, 9));
  await h.close();
  for (const withCheckpoint of [true, false]) {
    if (!withCheckpoint) await rm(join(dir, "index.ckpt"));
    const { log, lines } = capturingLogger();
    store = await storeFor(t, dir, { log });
    assert.ok(
      lines.some((l) => l.msg === "cut a torn or damaged tail off a volume" && l.at === endOfB) ||
        !withCheckpoint,
    );
    assert.equal((await stat(VOL1(dir))).size, endOfB);
    assert.ok((await readAll(store, "a")).equals(pattern(1000, 1)));
    assert.ok((await readAll(store, "b")).equals(pattern(2000, 2)));
    assert.equal(store.stat("c"), undefined);
    await store.put("d", pattern(10, 4), BIG);
    await store.close();
    await truncate(VOL1(dir), endOfB);
  }
  store = await storeFor(t, dir);
  assert.equal(store.stats().objects, 2);
});

void test("a flipped byte anywhere in a record is detected on read: never served again until the same version is restored, logged and counted once", async (t) => {
  const dir = await tempDir(t);
  const { log, lines } = capturingLogger();
  // No read cache: the record is read again after each repair and must come from the disk every time.
  const store = (await storeFor(t, dir, {
    log,
    maxBufferedBytes: 64 * 1024,
    readCacheBytes: 0,
  })) as DiskStore;
  const small = pattern(5000, 1);
  const { version } = await store.put("s", small, { ...BIG, contentType: "text/plain" });
  const large = pattern(200_000, 2);
  await store.put("l", large, BIG);
  const smallHead = RECORD_HEADER_BYTES + 1 + "text/plain".length;
  const at = (key: string): number => store.index.offsetOf(store.index.find(Buffer.from(key)));
  let expectedErrors = 0;
  // Body, key, content type, a header field and a CRC field of the small record.
  for (const offset of [
    smallHead + 4999,
    smallHead,
    RECORD_HEADER_BYTES,
    RECORD_HEADER_BYTES + 3,
    9,
    26,
    33,
    38,
  ]) {
    const smallAt = at("s");
    await flipByte(VOL1(dir), smallAt + offset);
    await assert.rejects(store.read("s"), { code: "CHECKSUM_MISMATCH" }, `flip at ${offset}`);
    expectedErrors++;
    await flipByte(VOL1(dir), smallAt + offset);
    // Quarantined: not read again, however the disk looks now, until a good copy of the version comes back.
    await assert.rejects(store.read("s", { start: 0, end: 10 }), { code: "CHECKSUM_MISMATCH" });
    await assert.rejects(
      store.put("s", pattern(10, 9), { ...BIG, version: { ...version, stamp: version.stamp - 1 } }),
      {
        code: "STALE_VERSION",
      },
    );
    await store.put("s", small, { ...BIG, contentType: "text/plain", version });
    assert.ok((await readAll(store, "s")).equals(small));
  }
  // A large record streams; a bad byte late in the body fails the stream at its end.
  await flipByte(VOL1(dir), at("l") + RECORD_HEADER_BYTES + 1 + 150_000);
  const { body } = await store.read("l");
  assert.equal(body.kind, "stream");
  await assert.rejects(
    (async () => {
      if (body.kind === "stream") for await (const _ of body.stream);
    })(),
    { code: "CHECKSUM_MISMATCH" },
  );
  expectedErrors++;
  assert.equal(store.stats().checksumErrors, expectedErrors);
  assert.equal(
    lines.filter((l) => l.msg === "stored record failed its checksum; quarantined until repair restores it")
      .length,
    expectedErrors,
  );
});

void test("damage in the middle of a volume: a bad body stays indexed (and fails), a header beyond repair is skipped", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  await store.put("k", pattern(100, 1), BIG);
  await store.put("k", pattern(100, 2), BIG); // the newest version, about to rot
  await store.put("x", pattern(100, 3), BIG);
  await store.put("y", pattern(100, 4), BIG);
  await store.close();
  const rec = recordLength(1, 0, 100);
  await flipByte(VOL1(dir), VOLUME_HEADER_BYTES + rec + RECORD_HEADER_BYTES + 1 + 50); // k v2 body
  // Two bytes of x's header: more than one damaged byte is not set right.
  await flipByte(VOL1(dir), VOLUME_HEADER_BYTES + 2 * rec + 8);
  await flipByte(VOL1(dir), VOLUME_HEADER_BYTES + 2 * rec + 26);
  await rm(join(dir, "index.ckpt"));
  const { log, lines } = capturingLogger();
  store = await storeFor(t, dir, { log });
  // Not the older version of k: the newest record stands, and reads of it fail loudly.
  await assert.rejects(store.read("k"), { code: "CHECKSUM_MISMATCH" });
  assert.equal(store.stat("x"), undefined);
  assert.ok((await readAll(store, "y")).equals(pattern(100, 4)));
  assert.ok(lines.some((l) => l.msg === "skipped damaged bytes in a volume"));
  assert.equal((await stat(VOL1(dir))).size, VOLUME_HEADER_BYTES + 4 * rec, "nothing cut");
});

void test("one damaged byte anywhere in a record's head (magic, CRCs, lengths, version, key, content type): recovery finds the record, quarantines it, and never falls back to the key's previous version or a deleted file", async (t) => {
  const dir = await tempDir(t);
  const pristine = join(dir, "pristine.vol");
  let store = await storeFor(t, dir);
  const key = "head/rot";
  await store.put(key, pattern(300, 1), { ...BIG, contentType: "text/plain" });
  const { version } = await store.put(key, pattern(300, 2), { ...BIG, contentType: "text/plain" });
  await store.put("gone", pattern(50, 3), BIG);
  await store.delete("gone");
  await store.put("after", pattern(100, 4), BIG);
  await store.close();
  await copyFile(VOL1(dir), pristine);
  const rec = recordLength(key.length, "text/plain".length, 300);
  const v2At = VOLUME_HEADER_BYTES + rec;
  const tombstoneAt = VOLUME_HEADER_BYTES + 2 * rec + recordLength(4, 0, 50);
  const cases: [string, number][] = [];
  for (let p = 0; p < RECORD_HEADER_BYTES + key.length + "text/plain".length; p++)
    cases.push(["v2", v2At + p]);
  for (let p = 0; p < RECORD_HEADER_BYTES + 4; p++) cases.push(["tombstone", tombstoneAt + p]);
  for (const [which, at] of cases) {
    await copyFile(pristine, VOL1(dir));
    await rm(join(dir, "index.ckpt"), { force: true });
    await rm(join(dir, "quarantine.json"), { force: true });
    const h = await open(VOL1(dir), "r+");
    const b = Buffer.alloc(1);
    await h.read(b, 0, 1, at);
    b[0] = b[0]! ^ (1 + (at % 255)); // a different value at every position
    await h.write(b, 0, 1, at);
    await h.close();
    const { log, lines } = capturingLogger();
    store = await storeFor(t, dir, { log });
    const what = `${which}, byte ${at - (which === "v2" ? v2At : tombstoneAt)} of the head`;
    if (which === "v2") {
      assert.deepEqual(store.held(key)?.version, version, what);
      await assert.rejects(store.read(key), { code: "CHECKSUM_MISMATCH" }, what);
      assert.equal(store.stat("gone"), undefined, what);
    } else {
      assert.equal(store.held("gone")?.deleted, true, what);
      assert.equal(store.stat("gone"), undefined, what);
      assert.ok((await readAll(store, key)).equals(pattern(300, 2)), what);
    }
    assert.ok((await readAll(store, "after")).equals(pattern(100, 4)), what);
    assert.equal(store.stats().checksumErrors, 1, what);
    assert.ok(
      lines.some((l) => l.msg === "damaged record quarantined until repair restores it"),
      what,
    );
    await store.close();
  }
});
