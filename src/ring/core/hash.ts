import { fmix32 } from "../../common/fmix.js";

/**
 * 32-bit string hashing for ring positions and key placement: FNV-1a over UTF-16 code units, finished with
 * murmur3's fmix32 so that nearby inputs ("node-1", "node-2") land far apart. Deterministic across processes
 * and machines (no per-process salt), which is what makes every member derive the same rings from the same
 * view.
 */
export function hash32(text: string, seed = 0): number {
  let h = seed === 0 ? 0x811c9dc5 : fmix32((Math.imul(seed, 0x9e3779b1) ^ 0x811c9dc5) >>> 0);
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}
