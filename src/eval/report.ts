import type { EvalItem } from "../data/eval-items.ts";
import { sampleInOrder } from "../data/sft/sampling.ts";
import type { ChartRow } from "./chart.ts";
import type { SkipKind } from "./items.ts";
import { ENDS, type Metrics, type Rate, type Sample } from "./metrics.ts";

/** summary.json: its shape is documented in docs/EVAL.md, and only ever grows. */
export interface Summary {
  version: 1;
  items_file: string;
  settings: RunSettings;
  items: { read: number; used: number; skipped: Record<SkipKind, number> };
  contestants: ContestantSummary[];
}

export interface RunSettings {
  temperature: number;
  top_p: number;
  max_tokens: number;
  seed: number;
  stream: boolean;
  timeout_ms: number;
  window_max_turns: number;
  persona: string;
}

export interface ContestantSummary {
  name: string;
  spec: string;
  /** What ran: the backend, its model and adapter. */
  model: string;
  /** Items answered (errors included); fewer than `items.used` when the run was stopped or the contestant failed. */
  items: number;
  /** Why the contestant could not run, or null. */
  failed: string | null;
  metrics: Metrics;
}

const END_NAMES: Record<(typeof ENDS)[number], string> = {
  stop: "ended by a stop sequence",
  eos: "ended at end of text",
  maxTokens: "ended at the token limit",
  stopOrEos: "ended by a stop sequence or end of text (the server does not say which)",
  cleaner: "ended by the bot when its cleaner cut",
};

function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

export function formatRate(r: Rate): string {
  if (r.rate === null) return "n = 0";
  return `${r.count}/${r.n} = ${percent(r.rate)} [${percent(r.ci95[0])}, ${percent(r.ci95[1])}]`;
}

function number(x: number | null, digits = 1): string {
  return x === null ? "–" : x.toFixed(digits);
}

/** The rate rows of the table and the chart, in one order. */
function rateRows(m: Metrics): [string, Rate][] {
  return [
    ["label leak", m.label_leak],
    ["follow-on speaker", m.follow_on],
    ["empty after cleaning", m.empty_after_clean],
    ["fallback line", m.fallback],
    ["backend error", m.backend_error],
    ...ENDS.map((end) => [END_NAMES[end], m.ends[end]] as [string, Rate]),
  ];
}

export function chartRows(contestants: readonly ContestantSummary[]): ChartRow[] {
  return contestants
    .filter((c) => !c.failed || c.items > 0)
    .flatMap((c) => rateRows(c.metrics).slice(0, 5).map(([metric, rate]) => ({ contestant: c.name, metric, rate })));
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** report.md: the settings, the table, and five items side by side. */
export function renderReport(summary: Summary, samples: readonly Sample[], items: readonly EvalItem[]): string {
  const { settings: s, contestants } = summary;
  const out: string[] = [
    "# Friend eval",
    "",
    `Items: ${summary.items.used} of ${summary.items.read} in ${summary.items_file} (skipped: ${Object.entries(summary.items.skipped)
      .map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`)
      .join(", ")}).`,
    `Settings: temperature ${s.temperature}, top-p ${s.top_p}, max tokens ${s.max_tokens}, seed ${s.seed}, timeout ${s.timeout_ms} ms, window ${s.window_max_turns} turns, persona ${s.persona}.`,
    "Rates are count/n = rate [95% Wilson interval]. Two contestants differ beyond noise when their intervals do not overlap (docs/EVAL.md).",
    "",
  ];
  for (const c of contestants) if (c.failed) out.push(`- **${c.name}** (${c.spec}) could not run: ${c.failed}`);
  if (contestants.some((c) => c.failed)) out.push("");

  const shown = contestants.filter((c) => c.items > 0);
  out.push(`| metric | ${shown.map((c) => `${cell(c.name)} (${cell(c.model)})`).join(" | ")} |`, `|---|${shown.map(() => "---|").join("")}`);
  const row = (name: string, value: (m: Metrics) => string) => out.push(`| ${name} | ${shown.map((c) => cell(value(c.metrics))).join(" | ")} |`);
  row("items answered", (m) => String(m.backend_error.n));
  for (const [i, [name]] of rateRows(shown[0]?.metrics ?? emptyMetricsShape()).entries()) {
    row(name, (m) => {
      const r = rateRows(m)[i]![1];
      return i === 1 && !m.follow_on_stops_seen ? `at least ${formatRate(r)} ¹` : formatRate(r);
    });
  }
  row("cut share (characters cut ÷ raw)", (m) => (m.cut_share === null ? "–" : percent(m.cut_share)));
  row("median reply length (characters)", (m) => number(m.reply_chars_median, 0));
  row("distinct-1 / distinct-2", (m) => `${number(m.distinct_1, 3)} / ${number(m.distinct_2, 3)}`);
  row("time to first text p50 / p95 (ms)", (m) => `${number(m.first_text_ms_p50, 0)} / ${number(m.first_text_ms_p95, 0)}`);
  row("tokens per second", (m) => number(m.tokens_per_second));
  row("held-out perplexity of the true replies", (m) => (m.perplexity === null ? "–" : `${m.perplexity.toPrecision(4)} (${m.perplexity_items} items, ${m.perplexity_tokens} tokens)`));
  out.push("");
  if (shown.some((c) => !c.metrics.follow_on_stops_seen)) {
    out.push(
      "¹ This server (the OpenAI API) does not say whether a stop sequence matched, and removes it from the text: a follow-on speaker caught by a stop sequence cannot be seen, so this counts only those that showed in the text.",
      "",
    );
  }
  const errors = shown.filter((c) => Object.keys(c.metrics.errors_by_kind).length);
  for (const c of errors) out.push(`Backend errors of ${c.name}: ${Object.entries(c.metrics.errors_by_kind).map(([k, v]) => `${k} ${v}`).join(", ")}.`);
  if (errors.length) out.push("");

  out.push("## Five items side by side", "");
  const byItem = new Map<string, Map<string, Sample>>();
  for (const sample of samples) {
    const row = byItem.get(sample.item) ?? new Map<string, Sample>();
    row.set(sample.contestant, sample);
    byItem.set(sample.item, row);
  }
  const complete = items.filter((item) => shown.every((c) => byItem.get(item.id)?.has(c.name)));
  for (const item of sampleInOrder(complete, 5, s.seed)) {
    out.push(`### ${item.id}`, "");
    for (const line of item.scene.slice(-3)) out.push(`> ${line.speaker}: ${line.text}`);
    out.push(`> **${item.addressed.speaker}: ${item.addressed.text}**`, "", `True reply (${item.reply.speaker}): ${item.reply.text}`, "");
    for (const c of shown) {
      const sample = byItem.get(item.id)!.get(c.name)!;
      const first = sample.attempts[0];
      out.push(`- **${c.name}** (${sample.outcome}): ${sample.posted}`);
      if (first) out.push(`  - raw: \`${JSON.stringify(first.raw)}\`, ${first.end}${first.cut.length ? `, cut: \`${JSON.stringify(first.cut)}\`` : ""}`);
    }
    out.push("");
  }
  if (complete.length === 0) out.push("(no item was answered by every contestant)", "");
  return out.join("\n");
}

/** Row names only depend on the shape, not on any contestant's figures. */
function emptyMetricsShape(): Metrics {
  const none: Rate = { count: 0, n: 0, rate: null, ci95: [0, 1] };
  return {
    label_leak: none,
    follow_on: none,
    follow_on_stops_seen: true,
    empty_after_clean: none,
    fallback: none,
    backend_error: none,
    errors_by_kind: {},
    ends: Object.fromEntries(ENDS.map((e) => [e, none])) as Metrics["ends"],
    cut_share: null,
    reply_chars_median: null,
    distinct_1: null,
    distinct_2: null,
    first_text_ms_p50: null,
    first_text_ms_p95: null,
    tokens_per_second: null,
    perplexity: null,
    perplexity_items: 0,
    perplexity_tokens: 0,
  };
}
