/**
 * `npm run bench:checksum`: the two CRC-32 implementations of src/common/checksum.ts on the sizes the store
 * checksums (a 1 KiB record, a 64 KiB chunk, a 1 MiB body), same process, same buffers.
 */
import { cpus } from "node:os";
import { randomBytes } from "node:crypto";
import { CRC32_IMPLEMENTATION, CRC32_IMPLEMENTATIONS } from "../src/common/checksum.js";

const SIZES = [1024, 64 * 1024, 1024 * 1024];

function measure(fn: (d: Uint8Array, p: number) => number, data: Buffer): number {
  const rounds = Math.max(200, Math.floor((256 * 1024 * 1024) / data.length));
  let sink = 0;
  for (let i = 0; i < rounds / 10; i++) sink = fn(data, sink); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) sink = fn(data, sink);
  const ns = Number(process.hrtime.bigint() - t0) / rounds;
  if (sink === 0.5) console.log(sink); // keep the loop
  return ns;
}

console.log("# CRC-32 implementations");
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? "unknown cpu"}; Node ${process.version}`);
console.log(`in use: ${CRC32_IMPLEMENTATION}\n`);
console.log("| size | zlib.crc32 | @node-rs/crc32 (simd) | simd / zlib time |");
console.log("|---|---|---|---|");
for (const size of SIZES) {
  const data = randomBytes(size);
  const zlib = measure(CRC32_IMPLEMENTATIONS.zlib, data);
  const simd = CRC32_IMPLEMENTATIONS.simd ? measure(CRC32_IMPLEMENTATIONS.simd, data) : undefined;
  const text = (ns: number): string =>
    ns >= 10_000 ? `${(ns / 1000).toFixed(0)} µs` : `${ns.toFixed(0)} ns`;
  console.log(
    `| ${size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`} | ${text(zlib)} (${(size / zlib).toFixed(2)} GB/s) | ${
      simd === undefined ? "not available" : `${text(simd)} (${(size / simd).toFixed(2)} GB/s)`
    } | ${simd === undefined ? "n/a" : (simd / zlib).toFixed(2)} |`,
  );
}
