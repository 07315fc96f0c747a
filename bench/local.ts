/**
 * Benchmark of the local backend (`npm run bench`), on a synthetic model with TinyLlama-1.1B's
 * shapes and random F16 weights (about 2.2 GB, written to a temp dir and deleted afterwards), with
 * and without a rank-16 LoRA adapter on q/k/v/o. It measures, through LocalBackend itself:
 * - prompt and generation tokens per second, with and without the adapter (best of alternating rounds);
 * - time to first token at turn 1 and turn 20 of a channel (and turn 20 with the cache reset);
 * - total generation throughput of 1 channel vs 4 channels at once;
 * - peak memory (max RSS).
 * The numbers go in docs/PERFORMANCE.md; nothing is asserted.
 *
 * Environment: LLAMA_THREADS and LLAMA_GPU_LAYERS as for Friend; BENCH_LAYERS to use fewer layers
 * for a quick check of the script itself; BENCH_DIR for where the model is written.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { GenerateRequest } from "../src/core/backend.ts";
import { LocalBackend, type LocalGenerationStats } from "../src/backends/local.ts";
import { loadSettings } from "../src/config/settings.ts";
import type { Turn } from "../src/core/turn.ts";
import { cleanReply } from "../src/reply/clean.ts";
import { TINYLLAMA_SHAPE, writeSyntheticLlama, writeSyntheticLora } from "../test/gguf/synthetic-llama.ts";

const persona = loadSettings().persona;
const threads = Number(process.env.LLAMA_THREADS) || availableParallelism();
const gpuLayers: "auto" | number =
  process.env.LLAMA_GPU_LAYERS && process.env.LLAMA_GPU_LAYERS !== "auto" ? Number(process.env.LLAMA_GPU_LAYERS) : "auto";
const shape = { ...TINYLLAMA_SHAPE, layers: Number(process.env.BENCH_LAYERS) || TINYLLAMA_SHAPE.layers };

/** Tokens generated for the speed measurements and per channel in the batching test. */
const GEN_TOKENS = 16;
/** Base and adapter speeds are measured in alternating rounds and the best kept: shared machines are noisy. */
const ROUNDS = Number(process.env.BENCH_ROUNDS) || 2;
/** Tokens per reply in the 20-turn conversation (time to first token is what it measures). */
const TURN_TOKENS = 4;

const LINES = [
  "so what do you think about the new coffee place downtown, is it any good at all",
  "i cannot believe you said that to my mother at dinner last night, she is still upset",
  "we should totally go to the beach this weekend if the weather holds up for once",
  "did you see the game yesterday, that last minute goal was completely unbelievable",
  "my landlord wants to raise the rent again and i honestly do not know what to do",
];

let clock = 0;
const turn = (author: string, text: string): Turn => ({ author, text, fromFriend: author === persona.name, at: ++clock });

function request(channelId: string, turns: readonly Turn[], maxTokens: number): GenerateRequest {
  return { channelId, persona, turns, stop: [], maxTokens, temperature: 0, topP: 1, signal: new AbortController().signal };
}

interface Timed {
  text: string;
  stats: LocalGenerationStats;
  firstTokenMs: number;
  totalMs: number;
}

async function timed(backend: LocalBackend, req: GenerateRequest): Promise<Timed> {
  const start = performance.now();
  let firstTokenMs = Number.NaN;
  let text = "";
  const gen = backend.generate(req);
  for (;;) {
    const next = await gen.next();
    if (next.done) return { text, stats: next.value, firstTokenMs, totalMs: performance.now() - start };
    if (Number.isNaN(firstTokenMs)) firstTokenMs = performance.now() - start;
    text += next.value;
  }
}

function maxRssMiB(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const round2 = (n: number) => round(n, 2);

/** A channel window of `n` user turns with Friend's replies between them. */
function longWindow(n: number): Turn[] {
  const turns: Turn[] = [];
  for (let i = 0; i < n; i++) {
    turns.push(turn("Alice", LINES[i % LINES.length]!));
    if (i < n - 1) turns.push(turn(persona.name, "oh come on, you know i am right about this one"));
  }
  return turns;
}

type SpeedResult = Record<"loadMs" | "promptTokens" | "promptTokensPerSecond" | "generationTokensPerSecond", number>;

async function measureSpeed(backend: LocalBackend, label: string): Promise<SpeedResult> {
  const loadStart = performance.now();
  await backend.prepare();
  const loadMs = performance.now() - loadStart;
  // A fresh channel: the whole prompt is evaluated, then GEN_TOKENS are generated.
  const r = await timed(backend, request(`speed-${label}`, longWindow(3), GEN_TOKENS));
  const promptTokensPerSecond = r.stats.evaluatedPromptTokens / (r.firstTokenMs / 1000);
  const generationTokensPerSecond = (r.stats.completionTokens - 1) / ((r.totalMs - r.firstTokenMs) / 1000);
  console.error(`[${label}] load ${round(loadMs)} ms, prompt ${r.stats.evaluatedPromptTokens} tok in ${round(r.firstTokenMs)} ms, ${r.stats.completionTokens} tok in ${round(r.totalMs)} ms`);
  return { loadMs, promptTokens: r.stats.evaluatedPromptTokens, promptTokensPerSecond, generationTokensPerSecond };
}

async function measureTurns(backend: LocalBackend): Promise<Record<string, number>> {
  let turns: Turn[] = [];
  const ttft: number[] = [];
  const evaluated: number[] = [];
  let promptTokens = 0;
  for (let i = 1; i <= 20; i++) {
    turns = [...turns, turn("Alice", `${LINES[i % LINES.length]} (${i})`)];
    const r = await timed(backend, request("conversation", turns, TURN_TOKENS));
    ttft.push(r.firstTokenMs);
    evaluated.push(r.stats.evaluatedPromptTokens);
    promptTokens = r.stats.promptTokens;
    const reply = cleanReply(r.text, { personaName: persona.name }) || "hm";
    turns = [...turns, turn(persona.name, reply)];
  }
  // Turn 20 again on a cleared sequence: what every turn would cost without cache reuse.
  turns = turns.slice(0, -1);
  backend.resetChannel("conversation");
  const cold = await timed(backend, request("conversation", turns, TURN_TOKENS));
  console.error(`[turns] ttft ${ttft.map((t) => round(t, 0)).join(" ")} ms; evaluated ${evaluated.join(" ")}`);
  return {
    turn1FirstTokenMs: ttft[0]!,
    turn1EvaluatedTokens: evaluated[0]!,
    turn20FirstTokenMs: ttft[19]!,
    turn20EvaluatedTokens: evaluated[19]!,
    turn20PromptTokens: promptTokens,
    turn20NoReuseFirstTokenMs: cold.firstTokenMs,
    turn20NoReuseEvaluatedTokens: cold.stats.evaluatedPromptTokens,
  };
}

async function measureChannels(backend: LocalBackend): Promise<Record<string, number>> {
  const prompt = [turn("Alice", LINES[0]!)];
  // Warm each channel's cache with the prompt so only generation is timed.
  const channels = ["ch-1", "ch-2", "ch-3", "ch-4"];
  await Promise.all(channels.map((c) => timed(backend, request(c, prompt, 1))));
  const run = async (ids: string[]) => {
    const start = performance.now();
    const results = await Promise.all(ids.map((c) => timed(backend, request(c, prompt, GEN_TOKENS))));
    const tokens = results.reduce((sum, r) => sum + r.stats.completionTokens, 0);
    return tokens / ((performance.now() - start) / 1000);
  };
  let one = 0;
  let four = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    one = Math.max(one, await run(channels.slice(0, 1)));
    four = Math.max(four, await run(channels));
    console.error(`[channels, round ${round}] 1 channel ${round2(one)} tok/s, 4 channels ${round2(four)} tok/s (best so far)`);
  }
  return { oneChannelTokensPerSecond: one, fourChannelsTokensPerSecond: four };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "friend-bench-"));
  const modelPath = join(dir, "synthetic-tinyllama-f16.gguf");
  const loraPath = join(dir, "synthetic-lora-r16.gguf");
  try {
    let t = performance.now();
    const modelBytes = writeSyntheticLlama(modelPath, shape);
    const loraBytes = writeSyntheticLora(loraPath, shape, 16);
    console.error(`wrote ${round(modelBytes / 2 ** 30, 2)} GiB model + ${round(loraBytes / 2 ** 20, 1)} MiB adapter in ${round((performance.now() - t) / 1000)} s`);

    const options = { modelPath, threads, gpuLayers, contextSize: 2048, sequences: 4 };
    let baseSpeed: SpeedResult | undefined;
    let tunedSpeed: SpeedResult | undefined;
    let rssAfterBase = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const base = new LocalBackend(options);
      baseSpeed = best(baseSpeed, await measureSpeed(base, `base, round ${round}`));
      await base.close();
      rssAfterBase ||= maxRssMiB();
      const withAdapter = new LocalBackend({ ...options, loraPath });
      tunedSpeed = best(tunedSpeed, await measureSpeed(withAdapter, `adapter, round ${round}`));
      await withAdapter.close();
    }

    const tuned = new LocalBackend({ ...options, loraPath });
    await tuned.prepare();
    t = performance.now();
    const turns = await measureTurns(tuned);
    const channels = await measureChannels(tuned);
    console.error(`[turns + channels] ${round((performance.now() - t) / 1000)} s`);
    await tuned.close();

    const report = {
      machine: { cpus: availableParallelism(), threads, gpuLayers, loadAverage1m: round(loadavg()[0]!, 2), node: process.version },
      model: { shape, modelGiB: round(modelBytes / 2 ** 30, 2), adapterMiB: round(loraBytes / 2 ** 20, 1), contextSize: 2048, sequences: 4 },
      speed: { rounds: ROUNDS, base: mapValues(baseSpeed!, (v) => round(v)), adapter: mapValues(tunedSpeed!, (v) => round(v)) },
      turns: mapValues(turns, (v) => round(v)),
      channels: mapValues(channels, (v) => round(v, 2)),
      peakRssMiB: { baseOnly: rssAfterBase, overall: maxRssMiB() },
    };
    console.log(JSON.stringify(report, null, 2));
    printTable(report);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The faster of two measurements of the same thing. */
function best(a: SpeedResult | undefined, b: SpeedResult): SpeedResult {
  if (!a) return b;
  return {
    loadMs: Math.min(a.loadMs, b.loadMs),
    promptTokens: b.promptTokens,
    promptTokensPerSecond: Math.max(a.promptTokensPerSecond, b.promptTokensPerSecond),
    generationTokensPerSecond: Math.max(a.generationTokensPerSecond, b.generationTokensPerSecond),
  };
}

function mapValues<T extends Record<string, number>>(o: T, f: (v: number) => number): Record<keyof T, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)])) as Record<keyof T, number>;
}

function printTable(r: {
  speed: { base: Record<string, number>; adapter: Record<string, number> };
  turns: Record<string, number>;
  channels: Record<string, number>;
  peakRssMiB: Record<string, number>;
}): void {
  const rows: Array<[string, string, string]> = [
    ["", "base", "with adapter"],
    ["load, best (ms)", `${r.speed.base.loadMs}`, `${r.speed.adapter.loadMs}`],
    ["prompt tokens/s", `${r.speed.base.promptTokensPerSecond}`, `${r.speed.adapter.promptTokensPerSecond}`],
    ["generation tokens/s", `${r.speed.base.generationTokensPerSecond}`, `${r.speed.adapter.generationTokensPerSecond}`],
  ];
  console.error("\n" + rows.map((row) => row.map((c) => c.padEnd(24)).join("")).join("\n"));
  console.error(
    `\ntime to first token (adapter): turn 1 ${r.turns.turn1FirstTokenMs} ms (${r.turns.turn1EvaluatedTokens} tokens evaluated), ` +
      `turn 20 ${r.turns.turn20FirstTokenMs} ms (${r.turns.turn20EvaluatedTokens} of ${r.turns.turn20PromptTokens}), ` +
      `turn 20 without reuse ${r.turns.turn20NoReuseFirstTokenMs} ms (${r.turns.turn20NoReuseEvaluatedTokens})`,
  );
  console.error(`generation throughput: 1 channel ${r.channels.oneChannelTokensPerSecond} tok/s, 4 channels at once ${r.channels.fourChannelsTokensPerSecond} tok/s`);
  console.error(`peak RSS: ${r.peakRssMiB.overall} MiB (base only: ${r.peakRssMiB.baseOnly} MiB)`);
}

await main();
