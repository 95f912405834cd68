/**
 * Edit distance with adjacent transpositions (optimal string alignment): `stauts` is one edit from `status`,
 * as a typist sees it.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(a.length, b.length);
}

/** Edits a mistyped word may be away from a name and still be taken for it: fewer for short words. */
function tolerance(word: string): number {
  return word.length <= 3 ? 1 : word.length <= 6 ? 2 : 3;
}

/**
 * The names `word` is most likely a typo of (the closest, in the given order): those within a few edits, and
 * those it is the start of (`rep` → `repair`, `replicator`). `keysOf` gives the spellings a name
 * is matched by (`queue replay` also by `replay`). Empty when nothing is close.
 */
export function closestNames(
  word: string,
  names: readonly string[],
  keysOf: (name: string) => readonly string[] = (name) => [name],
  max = 3,
): string[] {
  const w = word.toLowerCase();
  const scoreOf = (key: string): number => {
    const k = key.toLowerCase();
    const distance = editDistance(w, k);
    return w.length >= 2 && k.startsWith(w) ? Math.min(distance, 1) : distance;
  };
  const scored = names
    .map((name, index) => ({ name, index, score: Math.min(...keysOf(name).map(scoreOf)) }))
    .filter((s) => s.score <= tolerance(w) && s.score < w.length);
  const best = Math.min(...scored.map((s) => s.score));
  return scored
    .filter((s) => s.score === best)
    .slice(0, max)
    .map((s) => s.name);
}
