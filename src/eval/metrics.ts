import type { AttemptEnd } from "./recorder.ts";

/** A rate as summary.json gives it: how many of how many, and the 95% Wilson score interval. */
export interface Rate {
  count: number;
  n: number;
  /** count / n; null when n is 0. */
  rate: number | null;
  ci95: [number, number];
}

const Z95 = 1.959963984540054;

/** The Wilson score interval: honest near 0 and 1 and for small n, where the normal approximation is not. */
export function wilson(count: number, n: number, z = Z95): [number, number] {
  if (n === 0) return [0, 1];
  const p = count / n;
  const z2 = z * z;
  const denominator = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denominator;
  // Exact at the ends, where rounding would leave 1e-18 for a bound that is 0 (or 1).
  return [count === 0 ? 0 : Math.max(0, center - half), count === n ? 1 : Math.min(1, center + half)];
}

export function rate(count: number, n: number): Rate {
  return { count, n, rate: n === 0 ? null : count / n, ci95: wilson(count, n) };
}

/** Linear interpolation between closest ranks (type 7, as numpy and R default); null for no values. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * p;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (at - low);
}

function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu) ?? [];
}

/** Distinct-n: distinct n-grams ÷ all n-grams over every reply (n-grams never span two replies); null for no n-grams. */
export function distinctN(texts: readonly string[], n: number): number | null {
  const seen = new Set<string>();
  let total = 0;
  for (const text of texts) {
    const w = words(text);
    for (let i = 0; i + n <= w.length; i++) {
      seen.add(w.slice(i, i + n).join(" "));
      total++;
    }
  }
  return total === 0 ? null : seen.size / total;
}

/** One generation as samples.jsonl keeps it. */
export interface SampleAttempt {
  raw: string;
  cleaned: string;
  /** The raw text the cleaner took away, piece by piece (empty when it took nothing, or when it cut inside the reply). */
  cut: string[];
  end: AttemptEnd;
  firstTextMs: number | null;
  ms: number;
  completionTokens: number | null;
  error?: { kind: string; message: string };
}

/** One item answered by one contestant: a line of samples.jsonl. */
export interface Sample {
  contestant: string;
  item: string;
  /** `reply`: the bot posted the model's reply; `fallback`: its fallback line (empty twice); `error`: its error line. */
  outcome: "reply" | "fallback" | "error";
  /** What the channel would have seen. */
  posted: string;
  attempts: SampleAttempt[];
  /** Artefacts of the first generation's raw text (see docs/EVAL.md). */
  labelLeak: boolean;
  followOn: boolean;
  emptyAfterClean: boolean;
  /** The true reply's score (local models), or why it could not be scored. */
  perplexity?: { tokens: number; logProb: number } | { error: string };
  error?: { kind: string; message: string };
}

export const ENDS = ["stop", "eos", "maxTokens", "stopOrEos", "cleaner"] as const satisfies readonly AttemptEnd[];

export interface Metrics {
  label_leak: Rate;
  follow_on: Rate;
  /** False where the server does not say whether a stop sequence matched (OpenAI): follow_on then counts only what showed in the text. */
  follow_on_stops_seen: boolean;
  empty_after_clean: Rate;
  fallback: Rate;
  backend_error: Rate;
  errors_by_kind: Record<string, number>;
  ends: Record<(typeof ENDS)[number], Rate>;
  cut_share: number | null;
  reply_chars_median: number | null;
  distinct_1: number | null;
  distinct_2: number | null;
  first_text_ms_p50: number | null;
  first_text_ms_p95: number | null;
  tokens_per_second: number | null;
  perplexity: number | null;
  perplexity_items: number;
  perplexity_tokens: number;
}

/**
 * Every figure for one contestant, from its samples. Rates about the model's raw output are over
 * the items it answered (first generation, not an error); fallback and backend errors are over
 * every item asked.
 */
export function summarise(samples: readonly Sample[]): Metrics {
  const answered = samples.filter((s) => s.outcome !== "error");
  const firsts = answered.map((s) => s.attempts[0]!).filter(Boolean);
  const count = (predicate: (s: Sample) => boolean, of: readonly Sample[] = answered) => of.filter(predicate).length;
  const errorsByKind: Record<string, number> = {};
  for (const s of samples) if (s.outcome === "error") errorsByKind[s.error?.kind ?? "unknown"] = (errorsByKind[s.error?.kind ?? "unknown"] ?? 0) + 1;

  let rawChars = 0;
  let cutChars = 0;
  for (const a of firsts) {
    rawChars += a.raw.length;
    cutChars += Math.max(0, a.raw.length - a.cleaned.length);
  }
  const replies = answered.filter((s) => s.outcome === "reply").map((s) => s.posted);
  const attempts = answered.flatMap((s) => s.attempts).filter((a) => a.end !== "error");
  const firstText = attempts.map((a) => a.firstTextMs).filter((ms): ms is number => ms !== null);
  let decodedTokens = 0;
  let decodeSeconds = 0;
  for (const a of attempts) {
    // The first token's time is prompt evaluation: tokens per second counts the ones after it.
    if (a.completionTokens === null || a.completionTokens < 2 || a.firstTextMs === null || a.ms <= a.firstTextMs) continue;
    decodedTokens += a.completionTokens - 1;
    decodeSeconds += (a.ms - a.firstTextMs) / 1000;
  }
  let perplexityTokens = 0;
  let logProb = 0;
  let perplexityItems = 0;
  for (const s of samples) {
    if (!s.perplexity || "error" in s.perplexity) continue;
    perplexityItems++;
    perplexityTokens += s.perplexity.tokens;
    logProb += s.perplexity.logProb;
  }
  const ends = Object.fromEntries(ENDS.map((end) => [end, rate(firsts.filter((a) => a.end === end).length, firsts.length)])) as Metrics["ends"];
  return {
    label_leak: rate(count((s) => s.labelLeak), answered.length),
    follow_on: rate(count((s) => s.followOn), answered.length),
    follow_on_stops_seen: !firsts.some((a) => a.end === "stopOrEos"),
    empty_after_clean: rate(count((s) => s.emptyAfterClean), answered.length),
    fallback: rate(count((s) => s.outcome === "fallback", samples), samples.length),
    backend_error: rate(count((s) => s.outcome === "error", samples), samples.length),
    errors_by_kind: errorsByKind,
    ends,
    cut_share: rawChars === 0 ? null : cutChars / rawChars,
    reply_chars_median: percentile(replies.map((r) => r.length), 0.5),
    distinct_1: distinctN(replies, 1),
    distinct_2: distinctN(replies, 2),
    first_text_ms_p50: percentile(firstText, 0.5),
    first_text_ms_p95: percentile(firstText, 0.95),
    tokens_per_second: decodeSeconds > 0 ? decodedTokens / decodeSeconds : null,
    perplexity: perplexityTokens > 0 ? Math.exp(-logProb / perplexityTokens) : null,
    perplexity_items: perplexityItems,
    perplexity_tokens: perplexityTokens,
  };
}
