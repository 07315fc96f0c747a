import type { TiktokenBPE } from "js-tiktoken/lite";

/**
 * Counts the tokens of a tiktoken encoding (cl100k_base, o200k_base): the same number as
 * js-tiktoken's `encode(text, [], []).length`, with special-token text counted as plain text.
 *
 * js-tiktoken merges byte pairs by rescanning a whole pre-tokenised piece after every merge, which
 * is quadratic in the piece, and a run without spaces or punctuation is a single piece: 2000 × "中"
 * took 3.4 s on the event loop. Here a piece's candidate merges wait in a heap and only the two
 * neighbours of a merge are looked up again, so a piece of n bytes costs O(n log n) whatever it
 * holds. The merge order (lowest rank first, leftmost on ties) is js-tiktoken's, so the counts are
 * exact; test/conversation/tokens.test.ts checks them against js-tiktoken itself.
 */
export class BpeTokenCounter {
  /** Token bytes, one char per byte (latin1), → rank. */
  readonly #ranks = new Map<string, number>();
  readonly #pieces: RegExp;

  constructor(encoding: TiktokenBPE) {
    // Each line is "<first token> <offset> <base64 token>…", ranks counting up from the offset.
    for (const line of encoding.bpe_ranks.split("\n")) {
      if (!line) continue;
      const [, offset, ...tokens] = line.split(" ");
      const first = Number.parseInt(offset!, 10);
      tokens.forEach((token, i) => this.#ranks.set(Buffer.from(token, "base64").toString("latin1"), first + i));
    }
    this.#pieces = new RegExp(encoding.pat_str, "gu");
  }

  count(text: string): number {
    let tokens = 0;
    // The pre-tokeniser never backtracks more than a run of one character class, so this pass is linear.
    for (const [piece] of text.matchAll(this.#pieces)) {
      // UTF-8 as TextEncoder writes it (a lone surrogate becomes U+FFFD), one char per byte.
      tokens += this.#countPiece(Buffer.from(piece, "utf8").toString("latin1"));
    }
    return tokens;
  }

  /** How many tokens byte-pair merging leaves of one piece (`bytes`: one char per byte). */
  #countPiece(bytes: string): number {
    const n = bytes.length;
    if (n <= 1) return n;
    if (this.#ranks.has(bytes)) return 1;
    const ranks = this.#ranks;
    // The pieces still standing, as a linked list over byte offsets: a part starts at s and ends at
    // end[s] (0 once s has been merged into its left neighbour); prev[s] is the part before it.
    const end = new Int32Array(n);
    const prev = new Int32Array(n);
    // pairRank[s]: rank of the part at s merged with the next one (Infinity when there is none).
    const pairRank = new Float64Array(n).fill(Infinity);
    // Heap keys order candidate merges by rank, then by offset: rank * stride + offset.
    const stride = n + 1;
    const heap = new MinHeap(3 * n);
    const consider = (s: number, to: number) => {
      const rank = ranks.get(bytes.slice(s, to));
      pairRank[s] = rank ?? Infinity;
      if (rank !== undefined) heap.push(rank * stride + s);
    };
    for (let s = 0; s < n; s++) {
      end[s] = s + 1;
      prev[s] = s - 1;
    }
    for (let s = 0; s + 1 < n; s++) consider(s, s + 2);

    let parts = n;
    while (heap.size > 0) {
      const key = heap.pop();
      const s = key % stride;
      // A key goes stale when its part was merged away or its right neighbour grew.
      if (end[s] === 0 || pairRank[s] !== (key - s) / stride) continue;
      const right = end[s]!;
      end[s] = end[right]!;
      end[right] = 0;
      pairRank[right] = Infinity;
      parts--;
      const next = end[s]!;
      if (next < n) {
        prev[next] = s;
        consider(s, end[next]!);
      } else {
        pairRank[s] = Infinity;
      }
      const before = prev[s]!;
      if (before >= 0) consider(before, next);
    }
    return parts;
  }
}

/** A binary min-heap of numbers in a fixed-size array. */
class MinHeap {
  readonly #items: Float64Array;
  size = 0;

  constructor(capacity: number) {
    this.#items = new Float64Array(capacity);
  }

  push(value: number): void {
    const items = this.#items;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }

  pop(): number {
    const items = this.#items;
    const top = items[0]!;
    const last = items[--this.size]!;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && items[child + 1]! < items[child]!) child++;
      if (items[child]! >= last) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
