/**
 * Benchmark of the dataset builders on a synthetic full-size transcript (about 60,000 script
 * lines in the Kaggle format): parse time, both `friend data` commands end to end, peak memory.
 * Run: node --import tsx bench/data.ts [lines]
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runDataChunks } from "../src/data/commands/data-chunks.ts";
import { runDataSft } from "../src/data/commands/data-sft.ts";
import type { CommandIo } from "../src/commandline/io.ts";
import { readTranscript } from "../src/data/parsers/formats.ts";
import { countDialogueLines } from "../src/data/transcript.ts";
import { syntheticKaggleTranscript } from "../test/data/helpers/synthetic-transcript.ts";

const lines = Number(process.argv[2] ?? 60_000);
const workDir = fileURLToPath(new URL("./.tmp/data/", import.meta.url));
mkdirSync(workDir, { recursive: true });

let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5);

async function timed<T>(label: string, work: () => T | Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await work();
  const ms = performance.now() - start;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  console.log(`${label.padEnd(44)} ${ms.toFixed(0).padStart(6)} ms   rss ${mib(process.memoryUsage().rss)}`);
  return result;
}

const quietIo: CommandIo = {
  out: () => {},
  err: (line) => console.error(line),
  env: process.env.LLAMA_MODEL_PATH ? { LLAMA_MODEL_PATH: process.env.LLAMA_MODEL_PATH } : {},
  cwd: workDir,
  interrupt: new AbortController().signal,
};

const input = join(workDir, "Friends_Transcript.txt");
console.log(`node ${process.version}, ${availableParallelism()} cores, rss at start ${mib(process.memoryUsage().rss)}`);
await timed(`generate ${lines.toLocaleString("en-US")} script lines`, () => writeFileSync(input, syntheticKaggleTranscript({ lines, seed: 1 })));
console.log(`input: ${(statSync(input).size / 2 ** 20).toFixed(1)} MiB`);

const transcript = await timed("parse (kaggle)", () => readTranscript(input, "kaggle"));
console.log(`  ${countDialogueLines(transcript.scenes).toLocaleString("en-US")} dialogue lines, ${transcript.scenes.length} scenes`);

for (const [label, argv] of [
  ["friend data sft (50 examples)", ["--input", input, "--out", "sft-50.jsonl"]],
  ["friend data sft (every pair)", ["--input", input, "--out", "sft-all.jsonl", "--count", "1000000"]],
  ["friend data chunks (128 tokens)", ["--input", input, "--out", "chunks.jsonl"]],
] as const) {
  const run = label.includes("chunks") ? runDataChunks : runDataSft;
  const code = await timed(label, () => run([...argv], quietIo));
  if (code !== 0) throw new Error(`${label} exited ${code}`);
}
for (const name of ["sft-all.jsonl", "chunks.jsonl"]) {
  const text = readFileSync(join(workDir, name), "utf8");
  console.log(`  ${name}: ${text.split("\n").length - 1} lines, ${(text.length / 2 ** 20).toFixed(1)} MiB`);
}

clearInterval(sampler);
console.log(`peak rss: ${mib(peakRss)} sampled, ${mib(process.resourceUsage().maxRSS * 1024)} maxRSS`);
rmSync(workDir, { recursive: true, force: true });

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}
