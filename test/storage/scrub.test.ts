import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { BIG, flipOnDisk, pattern, storeFor } from "./helpers.js";

void test("the scrub finds damaged records without any read, quarantines them, and resumes a pass after a restart", async (t) => {
  const dir = await tempDir(t);
  // Scrub off while filling.
  let store = await storeFor(t, dir, { readCacheBytes: 0, volumeMaxBytes: 64 * 1024 });
  for (let i = 0; i < 60; i++) await store.put(`s/${i}`, pattern(4000, i), BIG);
  await store.close();
  await flipOnDisk(dir, pattern(4000, 7).subarray(0, 32), 100);
  await flipOnDisk(dir, pattern(4000, 42).subarray(0, 32), 3000);

  // 100 KB/s: the ~250 KB of volumes take a few seconds, so the pass can be stopped halfway.
  const slow = { readCacheBytes: 0, volumeMaxBytes: 64 * 1024, scrubBytesPerSec: 100_000 };
  store = await storeFor(t, dir, slow);
  await waitFor(() => store.stats().scrub.bytesVerified > 80_000, { what: "part of a pass" });
  const foundBefore = store.stats().checksumErrors;
  await store.close();
  const saved = JSON.parse(await readFile(join(dir, "scrub.json"), "utf8")) as {
    volume: number;
    offset: number;
  };
  assert.ok(saved.volume > 1 || saved.offset > 32, `a position is saved: ${JSON.stringify(saved)}`);

  store = await storeFor(t, dir, { ...slow, scrubBytesPerSec: 10_000_000 });
  await waitFor(() => store.stats().scrub.passesCompleted === 1, { what: "the pass to complete" });
  const stats = store.stats();
  assert.ok(
    stats.scrub.bytesVerified < 250_000,
    `resumed, not restarted: ${stats.scrub.bytesVerified} bytes`,
  );
  // Both damaged records were found though no client read them: the first before the restart (remembered across
  // it, and counted again at start), the second after it.
  assert.ok(foundBefore >= 1, `found ${foundBefore} before the restart`);
  assert.equal(stats.checksumErrors, 2);
  for (const key of ["s/7", "s/42"])
    await assert.rejects(store.read(key), { code: "CHECKSUM_MISMATCH" }, key);
  assert.ok((await store.read("s/8")).info.size === 4000);
  assert.equal(store.stats().checksumErrors, stats.checksumErrors, "quarantined records are not read again");
});
