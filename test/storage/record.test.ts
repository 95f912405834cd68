import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  checksum,
  CRC32_IMPLEMENTATION,
  CRC32_IMPLEMENTATIONS,
  etagOf,
  formatChecksum,
  parseChecksum,
} from "../../src/common/checksum.js";
import {
  decodeRecordHeader,
  decodeVolumeHeader,
  encodeRecordHead,
  encodeVolumeHeader,
  headerCrcValid,
  recordLength,
  recordValid,
  sealRecordHead,
} from "../../src/storage/record.js";

void test("checksums are written as 8 lower-case hex digits and read back; ETags add the size", () => {
  for (const crc of [0, 1, 0xcbf43926, 0x0000abcd, 0x7fffffff, 0x80000000, 0xffffffff]) {
    const text = formatChecksum(crc);
    assert.equal(text, crc.toString(16).padStart(8, "0"));
    assert.equal(parseChecksum(text), crc);
  }
  assert.equal(etagOf(0xcbf43926, 1024), '"cbf43926-400"');
  assert.equal(etagOf(0, 0), '"00000000-0"');
});

void test("both CRC-32 implementations give the same values, also continued over pieces", () => {
  const { zlib, simd } = CRC32_IMPLEMENTATIONS;
  assert.equal(checksum(Buffer.from("123456789")), 0xcbf43926);
  // An empty piece continues the checksum unchanged, whatever memory is (not) behind it.
  assert.equal(checksum(randomBytes(0), 7), 7);
  assert.equal(checksum(Buffer.alloc(0), 7), 7);
  if (!simd) return; // no prebuilt binary for this platform: zlib's alone is used
  assert.equal(CRC32_IMPLEMENTATION, process.env.BACKPACK_CRC32 === "zlib" ? "zlib" : "simd");
  for (const size of [1, 3, 15, 16, 17, 63, 64, 65, 1000, 4096, 65_537, 1 << 20]) {
    const data = randomBytes(size);
    assert.equal(simd(data, 0), zlib(data, 0), `size ${size}`);
    const cut = size >> 1;
    assert.equal(
      simd(data.subarray(cut), simd(data.subarray(0, cut), 0)),
      zlib(data, 0),
      `pieces of ${size}`,
    );
    assert.equal(simd(new Uint8Array(data), 7), zlib(data, 7));
  }
  const forced = execFileSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import("${new URL("../../src/common/checksum.js", import.meta.url).href}").then((m) => console.log(m.CRC32_IMPLEMENTATION))`,
    ],
    { env: { ...process.env, BACKPACK_CRC32: "zlib" }, encoding: "utf8" },
  );
  assert.equal(forced.trim(), "zlib");
});

const body = Buffer.from("the body of the record, some bytes");
const meta = {
  key: Buffer.from("dir/ключ.txt"),
  contentType: Buffer.from("text/plain"),
  headers: Buffer.alloc(0),
  size: body.length,
  version: { stamp: 1_800_000_000_123_456, origin: 0xbeef },
  bodyCrc: checksum(body),
  tombstone: false,
};

void test("a record head encodes and decodes; lengths past 32 bits survive", () => {
  const head = encodeRecordHead(meta, 99);
  const h = decodeRecordHeader(head)!;
  assert.equal(h.size, body.length);
  assert.deepEqual(h.version, meta.version);
  assert.equal(h.keyBytes, meta.key.length);
  assert.equal(h.headBytes, head.length);
  assert.equal(h.length % 8, 0);
  assert.equal(h.length, recordLength(meta.key.length, meta.contentType.length, body.length));
  assert.ok(headerCrcValid(head, h, 99));
  assert.ok(!headerCrcValid(head, h, 98), "the salt is part of the header CRC");
  assert.ok(recordValid(head, h, checksum(body)));
  const big = decodeRecordHeader(encodeRecordHead({ ...meta, size: 2 ** 40 + 5 }, 1))!;
  assert.equal(big.size, 2 ** 40 + 5);
  const tomb = decodeRecordHeader(
    encodeRecordHead({ ...meta, contentType: Buffer.alloc(0), size: 0, bodyCrc: 0, tombstone: true }, 1),
  )!;
  assert.equal(tomb.tombstone, true);
});

void test("a record of format 1 (before versions) still decodes, its version derived from its write time", () => {
  const head = encodeRecordHead(meta, 5);
  // Format 1: the byte at 12 is 1, bytes 24-31 are the write time in ms and 38-39 are zero.
  head.writeUInt8(1, 12);
  head.writeUInt32LE(1_800_000_000_123 % 2 ** 32, 24);
  head.writeUInt32LE(Math.floor(1_800_000_000_123 / 2 ** 32), 28);
  head.writeUInt16LE(0, 38);
  sealRecordHead(head, 5);
  const h = decodeRecordHeader(head)!;
  assert.deepEqual(h.version, { stamp: 1_800_000_000_123_000, origin: 0 });
  assert.ok(headerCrcValid(head, h, 5) && recordValid(head, h, checksum(body)));
  head.writeUInt16LE(1, 38);
  assert.equal(decodeRecordHeader(head), undefined, "format 1 has no origin");
});

void test("every single flipped bit of head or body is caught by the CRCs", () => {
  const head = encodeRecordHead(meta, 7);
  for (let at = 0; at < head.length + body.length; at++) {
    for (let bit = 0; bit < 8; bit++) {
      const h2 = Buffer.from(head);
      const b2 = Buffer.from(body);
      if (at < head.length) h2[at]! ^= 1 << bit;
      else b2[at - head.length]! ^= 1 << bit;
      const d = decodeRecordHeader(h2);
      const ok =
        d !== undefined &&
        d.headBytes === h2.length &&
        headerCrcValid(h2, d, 7) &&
        recordValid(h2, d, checksum(b2.subarray(0, d.size)));
      assert.ok(!ok, `flip at byte ${at} bit ${bit} went unnoticed`);
    }
  }
});

void test("re-sealing for another salt keeps the record valid there only", () => {
  const head = encodeRecordHead(meta, 1);
  sealRecordHead(head, 2);
  const h = decodeRecordHeader(head)!;
  assert.ok(headerCrcValid(head, h, 2) && !headerCrcValid(head, h, 1));
  assert.ok(recordValid(head, h, checksum(body)));
});

void test("volume headers round-trip and reject damage", () => {
  const b = encodeVolumeHeader({ id: 12, salt: 0xdeadbeef, compactedAt: 15 });
  assert.deepEqual(decodeVolumeHeader(b), { id: 12, salt: 0xdeadbeef, compactedAt: 15 });
  b[9]! ^= 1;
  assert.equal(decodeVolumeHeader(b), undefined);
});
