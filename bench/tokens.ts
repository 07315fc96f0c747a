/**
 * Token counting, before and after: js-tiktoken's own `encode` (quadratic in a run without spaces
 * or punctuation) beside Friend's `countTokens` (BpeTokenCounter), on the inputs of issue 10.
 * Run: node --import tsx bench/tokens.ts
 */
import { Tiktoken } from "js-tiktoken/lite";
import cl100kBase from "js-tiktoken/ranks/cl100k_base";
import { availableParallelism, cpus, loadavg } from "node:os";
import { countTokens } from "../src/core/tokens.ts";

const english =
  "So I was thinking, maybe we could all go to Central Perk later? Joey said he'd be there around 5:30, " +
  "and Phoebe's finally playing her new song, the one about the cat. It's going to be great! ";

const INPUTS: [string, string][] = [
  ["2000 × 中", "中".repeat(2000)],
  ["2000 emoji (😅)", "😅".repeat(2000)],
  ["4000 × 中", "中".repeat(4000)],
  ["10,000 × x", "x".repeat(10_000)],
  ["English message, 2000 chars", english.repeat(Math.ceil(2000 / english.length)).slice(0, 2000)],
];

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ");
console.log(`node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model.trim()}), load average ${load()}`);

const raw = new Tiktoken(cl100kBase);
// Loads the ranks and lets the JIT compile the counter before anything is timed.
for (const [, text] of INPUTS) for (let i = 0; i < 3; i++) countTokens(text);

/** Median time of `runs` calls, in ms. */
function time(runs: number, work: () => number): { ms: number; tokens: number } {
  const times: number[] = [];
  let tokens = 0;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    tokens = work();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(runs / 2)]!, tokens };
}

console.log("\n| input | tokens | js-tiktoken `encode` | `countTokens` | same count |");
console.log("|---|---|---|---|---|");
for (const [label, text] of INPUTS) {
  // A slow encode is timed once; a fast one, as the median of a few.
  const before = time(text.length > 1000 && label !== INPUTS.at(-1)![0] ? 1 : 9, () => raw.encode(text, [], []).length);
  const after = time(51, () => countTokens(text));
  console.log(`| ${label} | ${after.tokens.toLocaleString("en-US")} | ${fmt(before.ms)} | ${fmt(after.ms)} | ${before.tokens === after.tokens ? "yes" : `no (${before.tokens})`} |`);
}
console.log(`\nload average at the end: ${load()}`);

function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(2)} ms`;
}
