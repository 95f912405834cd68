export { seededRandom } from "../../src/common/random.js";

/** The p-quantile (0..1) of a list of numbers (nearest rank). */
export function quantile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] as number;
}
