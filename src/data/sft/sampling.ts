/**
 * mulberry32: a tiny seeded PRNG, so `--seed 1` picks the same examples on every machine
 * and Node version (Math.random cannot be seeded).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * `count` items chosen uniformly at random under `seed`, returned in their original order
 * so the output file reads like the script. Asking for more than there are returns them all.
 */
export function sampleInOrder<T>(items: readonly T[], count: number, seed: number): T[] {
  if (count >= items.length) return [...items];
  const random = seededRandom(seed);
  const indices = items.map((_, i) => i);
  // Partial Fisher–Yates: the first `count` slots end up a uniform sample.
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(random() * (indices.length - i));
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  return indices
    .slice(0, count)
    .sort((a, b) => a - b)
    .map((i) => items[i]!);
}
