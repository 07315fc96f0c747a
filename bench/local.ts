/**
 * Benchmark of the local backend (`npm run bench -- local [options]`), on synthetic models with
 * TinyLlama-1.1B's shapes and random weights, F16 and Q8_0, written by the test suite's GGUF
 * writer into bench/.cache (about 3.4 GB, kept between runs) with a rank-16 LoRA adapter on q/k/v/o.
 * Nothing is asserted; the figures go in docs/PERFORMANCE.md. The machine is shared and noisy, so
 * every comparison is made within one run, in alternating rounds, with the load average recorded.
 *
 *   --vs-llama-cpp       also run llama.cpp's own llama-bench and llama-batched-bench, built from
 *                        the same bundled source with the same options as Friend's native build,
 *                        and print Friend's figures as ratios of theirs
 *   --sweep              Friend alone with LLAMA_SEQUENCES 1, 2, 4 and context sizes 1024–4096
 *   --returning          issue 21's warm-channel figures on the Q8_0 model: a channel returning after
 *                        its sequence was taken, 16 channels on 4 sequences, the first turns after a
 *                        restart, each against warm channels, with and without saved states, and the
 *                        q8_0 KV cache against f16 (BENCH_WINDOW: history tokens per channel, default 1000;
 *                        --channels N: channels taking turns on 4 sequences, default 16; --runs "a;b": only
 *                        the runs whose names start so, e.g. "saved states, f16"; --baseline-channels N:
 *                        channels in the run without saved states, default 5)
 *   --build-options      llama-bench alone, built with each candidate set of cmake options
 *                        (native with and without OpenMP, without the llamafile kernels)
 *   --rounds N           alternating rounds (default 3)
 *   --types f16,q8_0     weight types (default both)
 *   --binaries native,prebuilt   which llama.cpp binaries Friend runs (default: native if built, and prebuilt)
 *   --wait-quiet M       before each run, wait up to M minutes (default 10) for other processes to leave the CPUs
 *
 * Environment: LLAMA_THREADS (default: the core count), BENCH_LAYERS (fewer layers, to check the script quickly).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { findLocalBuild } from "../src/backends/local/llama-build.ts";
import { TINYLLAMA_SHAPE, writeSyntheticLlama, writeSyntheticLora, type SyntheticWeightType } from "../test/gguf/synthetic-llama.ts";
import { ensureLlamaTools, llamaBatchedBench, llamaBench, watchProcess, type LlamaTools } from "./llama-cpp-tools.ts";
import type { FriendJob, FriendResult, ReturningJob, ReturningResult, TurnFigure } from "./local-friend.ts";

const CACHE = resolve(import.meta.dirname, ".cache");
const threads = Number(process.env.LLAMA_THREADS) || availableParallelism();
const shape = { ...TINYLLAMA_SHAPE, layers: Number(process.env.BENCH_LAYERS) || TINYLLAMA_SHAPE.layers };
/** llama-bench's -n and Friend's reply length for the speed figures. */
const GEN_TOKENS = 64;
/** Tokens per channel sequence, as in llama-batched-bench's -c / npl. */
const CONTEXT_SIZE = 2048;
const SEQUENCES = 4;

type Binary = FriendJob["build"];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}
const flag = (name: string) => process.argv.includes(name);

const load1 = () => Math.round(loadavg()[0]! * 100) / 100;

/** Share of all CPUs busy over `ms` (from /proc/stat): what other processes are using right now. */
async function busyShare(ms = 1000): Promise<number> {
  const read = () => {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.split(/\s+/).slice(1).map(Number);
    const idle = cpu[3]! + (cpu[4] ?? 0);
    return { idle, total: cpu.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await new Promise((r) => setTimeout(r, ms));
  const b = read();
  return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
}

/**
 * Waits (up to `--wait-quiet` minutes, default 10) until other processes use under 10% of the
 * CPUs: llama.cpp's threads wait for each other at every step, so one busy neighbour on a 2-core
 * machine slows generation tenfold. Returns the load to record with the run.
 */
async function quietEnough(): Promise<{ load: number; busy: number }> {
  const deadline = Date.now() + (Number(arg("--wait-quiet") ?? 10) * 60_000);
  let busy = await busyShare();
  while (busy > 0.1 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5000));
    busy = await busyShare();
  }
  return { load: load1(), busy: Math.round(busy * 100) / 100 };
}
const r1 = (n: number) => Math.round(n * 10) / 10;
const r2 = (n: number) => Math.round(n * 100) / 100;
const median = (xs: readonly number[]) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The synthetic files, written once per shape and writer version. */
function models(types: readonly SyntheticWeightType[]): { model: Record<string, string>; lora: string } {
  const writer = ["../src/gguf/writer.ts", "../test/gguf/synthetic-llama.ts"].map((f) => readFileSync(new URL(f, import.meta.url)));
  const key = createHash("sha1").update(JSON.stringify(shape)).update(Buffer.concat(writer)).digest("hex").slice(0, 10);
  const dir = join(CACHE, "models");
  mkdirSync(dir, { recursive: true });
  const write = (path: string, make: (tmp: string) => number) => {
    if (existsSync(path)) return;
    const started = performance.now();
    const bytes = make(`${path}.partial`);
    renameSync(`${path}.partial`, path);
    console.error(`wrote ${path} (${r2(bytes / 2 ** 30)} GiB) in ${r1((performance.now() - started) / 1000)} s`);
  };
  const model: Record<string, string> = {};
  for (const type of types) {
    model[type] = join(dir, `synthetic-${key}-${type}.gguf`);
    write(model[type], (tmp) => writeSyntheticLlama(tmp, shape, type));
  }
  const lora = join(dir, `synthetic-${key}-lora-r16.gguf`);
  write(lora, (tmp) => writeSyntheticLora(tmp, shape, 16));
  return { model, lora };
}

/** Runs bench/local-friend.ts in a process of its own. */
function friend(job: FriendJob): Promise<FriendResult & { othersBusy: number }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", resolve(import.meta.dirname, "local-friend.ts"), JSON.stringify(job)], { stdio: ["ignore", "pipe", "inherit"] });
    const stop = watchProcess(child.pid!);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => {
      const { othersBusy } = stop();
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("{")) reject(new Error(`Friend's bench process exited ${code}: ${out.slice(-2000)}`));
      else resolvePromise({ ...(JSON.parse(line) as FriendResult), othersBusy });
    });
  });
}

interface Sample<T> {
  round: number;
  /** 1-minute load average when the run started. */
  load: number;
  /** Share of the CPUs other processes used in the second before it started. */
  busy: number;
  value: T;
}

async function vsLlamaCpp(): Promise<void> {
  const rounds = Number(arg("--rounds")) || 3;
  const types = (arg("--types") ?? "f16,q8_0").split(",") as SyntheticWeightType[];
  const nativeBuilt = findLocalBuild() !== undefined;
  const binaries = (arg("--binaries")?.split(",") as Binary[] | undefined) ?? (nativeBuilt ? ["native", "prebuilt"] : ["prebuilt"]);
  if (!nativeBuilt) console.error("no native build (npm run build:llama): Friend runs the prebuilt binary only, against llama.cpp built with the native options");
  const files = models(types);
  const tools: LlamaTools = ensureLlamaTools();

  const record: Record<string, Record<string, Array<Sample<unknown>>>> = {};
  const put = (type: string, what: string, sample: Sample<unknown>) => ((record[type] ??= {})[what] ??= []).push(sample);

  let promptTokens = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const type of types) {
      const model = files.model[type]!;
      const steps: Array<[string, () => Promise<unknown>]> = [
        ["llama-bench", async () => llamaBench(tools, model, { threads, promptTokens: promptTokens || 128, genTokens: GEN_TOKENS, genDepth: promptTokens || 128, reps: 2 })],
        ["llama-batched-bench", async () => llamaBatchedBench(tools, model, { threads, promptTokens: promptTokens || 128, genTokens: GEN_TOKENS, parallel: [1, SEQUENCES], contextPerSequence: CONTEXT_SIZE })],
        ...binaries.map((build): [string, () => Promise<unknown>] => [
          `friend-${build}`,
          async () => {
            const result = await friend({ ...friendJob(model, build), measure: ["speed", "channels"] });
            promptTokens ||= result.speed?.promptTokens ?? 0;
            return result;
          },
        ]),
        // LoRA overhead and time to first token are Friend's own figures: the first binary only, in a run of their own.
        [`friend-${binaries[0]}-lora-turns`, async () => friend({ ...friendJob(model, binaries[0]!), loraPath: files.lora, measure: ["lora", "turns"] })],
      ];
      // Friend first in round 1, so llama-bench gets the same prompt length; then the order turns each round.
      const order = round % 2 === 1 ? [...steps.slice(2), ...steps.slice(0, 2)] : [...steps].reverse();
      for (const [name, run] of order) {
        const { load, busy } = await quietEnough();
        const started = performance.now();
        const value = await run();
        console.error(`[round ${round}, ${type}] ${name}: ${r1((performance.now() - started) / 1000)} s, load ${load}, others busy ${busy}: ${JSON.stringify(value)}`);
        put(type, name, { round, load, busy, value });
      }
    }
  }
  report(record, types, binaries, rounds, tools);
}

type ToolValue<T> = { result: T; peakRssMiB: number };

function friendJob(modelPath: string, build: Binary): FriendJob {
  return { modelPath, build, threads, contextSize: CONTEXT_SIZE, sequences: SEQUENCES, measure: [], genTokens: GEN_TOKENS, reps: 2 };
}

/** Others may use at most this share of the CPUs during a round's runs for the round to count. */
const CLEAN_ROUND = 0.15;

function report(record: Record<string, Record<string, Array<Sample<unknown>>>>, types: readonly string[], binaries: readonly Binary[], rounds: number, tools: LlamaTools): void {
  const lines: string[] = [];
  const summary: Record<string, unknown> = {
    machine: { cpus: availableParallelism(), threads, node: process.version },
    shape,
    rounds,
    llamaCppOptions: tools.cmakeOptions,
  };
  for (const type of types) {
    const all = record[type]!;
    // Rounds in which no run shared the CPUs with much else; all rounds if there is none.
    const busyIn = (round: number) => Math.max(...Object.values(all).flatMap((v) => v.filter((x) => x.round === round).map((x) => (x.value as { othersBusy?: number }).othersBusy ?? 0)));
    const clean = Array.from({ length: rounds }, (_, i) => i + 1).filter((round) => busyIn(round) <= CLEAN_ROUND);
    const kept = clean.length > 0 ? clean : Array.from({ length: rounds }, (_, i) => i + 1);
    const r = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.filter((x) => kept.includes(x.round))]));
    const bench = r["llama-bench"] as Array<Sample<ToolValue<{ promptTokensPerSecond: number; generationTokensPerSecond: number }>>>;
    const batched = r["llama-batched-bench"] as Array<Sample<ToolValue<Record<number, number>>>>;
    const byRound = <T>(samples: Array<Sample<T>>, round: number) => samples.find((s) => s.round === round)?.value;
    const llamaBenchFig = {
      prompt: median(bench.map((s) => s.value.result.promptTokensPerSecond)),
      generation: median(bench.map((s) => s.value.result.generationTokensPerSecond)),
      peakRssMiB: Math.max(...bench.map((s) => s.value.peakRssMiB)),
    };
    const batchedFig = { one: median(batched.map((s) => s.value.result[1]!)), all: median(batched.map((s) => s.value.result[SEQUENCES]!)) };
    const during = (v: unknown) => Math.round(100 * ((v as { othersBusy?: number }).othersBusy ?? 0));
    const loads = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.map((s) => `${s.load} (others ${Math.round(s.busy * 100)}% before, ${during(s.value)}% during)`)]));
    const out: Record<string, unknown> = { load: loads, llamaBench: llamaBenchFig, llamaBatchedBench: batchedFig };
    lines.push(
      `\n${type.toUpperCase()}  (llama.cpp ${Object.entries(tools.cmakeOptions).map(([k, v]) => `${k}=${v}`).join(" ")}, ${threads} threads; ` +
        `medians of rounds ${kept.join(", ")} of ${rounds}${clean.length > 0 ? ` (the rounds where others used ≤ ${CLEAN_ROUND * 100}% of the CPUs)` : " (no round was quiet)"}; ratios are per round, then the median)`,
    );
    lines.push(
      `  llama-bench: prompt ${r1(llamaBenchFig.prompt)} tok/s, generation ${r1(llamaBenchFig.generation)} tok/s; ` +
        `llama-batched-bench generation total: 1 seq ${r1(batchedFig.one)}, ${SEQUENCES} seqs ${r1(batchedFig.all)} tok/s`,
    );
    for (const build of binaries) {
      const friend = r[`friend-${build}`] as Array<Sample<FriendResult>> | undefined;
      if (!friend) continue;
      const ratio = (f: (fr: FriendResult, round: number) => number | undefined) => r2(median(friend.map((s) => f(s.value, s.round) ?? Number.NaN)));
      const extras = r[`friend-${build}-lora-turns`] as Array<Sample<FriendResult>> | undefined;
      const extra = (f: (fr: FriendResult) => number) => (extras?.length ? r2(median(extras.map((s) => f(s.value)))) : undefined);
      const fig = {
        binary: friend[0]!.value.binary,
        prompt: median(friend.map((s) => s.value.speed!.promptTokensPerSecond)),
        generation: median(friend.map((s) => s.value.speed!.generationTokensPerSecond)),
        channelsOne: median(friend.map((s) => s.value.channels![1]!)),
        channelsAll: median(friend.map((s) => s.value.channels![SEQUENCES]!)),
        promptRatio: ratio((fr, round) => fr.speed!.promptTokensPerSecond / byRound(bench, round)!.result.promptTokensPerSecond),
        generationRatio: ratio((fr, round) => fr.speed!.generationTokensPerSecond / byRound(bench, round)!.result.generationTokensPerSecond),
        configured: median(friend.map((s) => s.value.speed!.configuredTokensPerSecond ?? Number.NaN)),
        configuredRatio: ratio((fr, round) => (fr.speed!.configuredTokensPerSecond ?? Number.NaN) / byRound(bench, round)!.result.generationTokensPerSecond),
        channelsOneRatio: ratio((fr, round) => fr.channels![1]! / byRound(batched, round)!.result[1]!),
        channelsAllRatio: ratio((fr, round) => fr.channels![SEQUENCES]! / byRound(batched, round)!.result[SEQUENCES]!),
        batchingGain: ratio((fr) => fr.channels![SEQUENCES]! / fr.channels![1]!),
        peakRssMiB: Math.max(...friend.map((s) => s.value.peakRssMiB)),
        loraPromptOverhead: extra((fr) => 1 - fr.lora!.adapter.promptTokensPerSecond / fr.lora!.base.promptTokensPerSecond),
        loraGenerationOverhead: extra((fr) => 1 - fr.lora!.adapter.generationTokensPerSecond / fr.lora!.base.generationTokensPerSecond),
        ttftTurn1Ms: extra((fr) => fr.turns!.turn1Ms),
        ttftTurn20Ms: extra((fr) => fr.turns!.turn20Ms),
        ttftTurn20NoReuseMs: extra((fr) => fr.turns!.turn20NoReuseMs),
        ttftTurn20OverTurn1: extra((fr) => fr.turns!.turn20Ms / fr.turns!.turn1Ms),
        evaluatedPerTurn: extras?.[0]?.value.turns?.evaluated,
      };
      out[`friend-${build}`] = fig;
      lines.push(`  Friend, ${fig.binary}:`);
      lines.push(`    prompt ${r1(fig.prompt)} tok/s = ${fig.promptRatio}× llama-bench;  generation ${r1(fig.generation)} tok/s = ${fig.generationRatio}× llama-bench (greedy), ${r1(fig.configured)} tok/s = ${fig.configuredRatio}× as configured (sampling, stop sequences)`);
      lines.push(`    generation total: 1 channel ${r1(fig.channelsOne)} tok/s = ${fig.channelsOneRatio}×, ${SEQUENCES} channels ${r1(fig.channelsAll)} tok/s = ${fig.channelsAllRatio}× llama-batched-bench (${fig.batchingGain}× of 1 channel)`);
      if (fig.loraGenerationOverhead !== undefined) lines.push(`    LoRA overhead: prompt ${r1(100 * fig.loraPromptOverhead!)}%, generation ${r1(100 * fig.loraGenerationOverhead)}%`);
      if (fig.ttftTurn1Ms !== undefined) {
        lines.push(`    time to first token: turn 1 ${Math.round(fig.ttftTurn1Ms)} ms, turn 20 ${Math.round(fig.ttftTurn20Ms!)} ms (${fig.ttftTurn20OverTurn1}× turn 1), turn 20 without the cache ${Math.round(fig.ttftTurn20NoReuseMs!)} ms`);
        lines.push(`    prompt tokens evaluated per turn: ${fig.evaluatedPerTurn?.join(" ")}`);
      }
      lines.push(`    peak RSS ${fig.peakRssMiB} MiB (llama-bench ${llamaBenchFig.peakRssMiB} MiB)`);
    }
    lines.push(`  load average (1 min) at each run, and the CPU share other processes used just before and during it:`);
    for (const [k, v] of Object.entries(loads)) lines.push(`    ${k}: ${v.join(" / ")}`);
    summary[type] = out;
  }
  console.log(JSON.stringify(summary, null, 2));
  console.error(lines.join("\n"));
}

/** Friend alone: single-channel and all-channel speed for several LLAMA_SEQUENCES and context sizes. */
async function sweep(): Promise<void> {
  const rounds = Number(arg("--rounds")) || 2;
  const types = (arg("--types") ?? "q8_0").split(",") as SyntheticWeightType[];
  const build: Binary = (arg("--binaries")?.split(",")[0] as Binary | undefined) ?? (findLocalBuild() ? "native" : "prebuilt");
  const files = models(types);
  const configs = [
    { sequences: 1, contextSize: 2048 },
    { sequences: 2, contextSize: 2048 },
    { sequences: 4, contextSize: 2048 },
    { sequences: 4, contextSize: 1024 },
    { sequences: 4, contextSize: 4096 },
  ];
  const results: Array<{ type: string; sequences: number; contextSize: number; round: number; load: number; r: FriendResult }> = [];
  for (let round = 1; round <= rounds; round++) {
    for (const type of types) {
      for (const c of round % 2 ? configs : [...configs].reverse()) {
        const { load } = await quietEnough();
        const r = await friend({ modelPath: files.model[type]!, build, threads, ...c, measure: ["speed", "channels"], genTokens: GEN_TOKENS, reps: 2 });
        console.error(`[round ${round}, ${type}] sequences ${c.sequences} × ${c.contextSize}: load ${load}: ${JSON.stringify(r)}`);
        results.push({ type, ...c, round, load, r });
      }
    }
  }
  console.error(`\nFriend (${build}), ${threads} threads, medians of ${rounds} rounds; "1 channel" is the prompt/generation speed of one channel in that context:`);
  for (const type of types) {
    const base = results.filter((x) => x.type === type && x.sequences === 1);
    for (const c of configs) {
      const rs = results.filter((x) => x.type === type && x.sequences === c.sequences && x.contextSize === c.contextSize);
      const vsOne = median(rs.map((x) => x.r.speed!.generationTokensPerSecond / base.find((b) => b.round === x.round)!.r.speed!.generationTokensPerSecond));
      console.error(
        `  ${type} sequences ${c.sequences} × ${c.contextSize}: 1 channel prompt ${r1(median(rs.map((x) => x.r.speed!.promptTokensPerSecond)))}, generation ${r1(median(rs.map((x) => x.r.speed!.generationTokensPerSecond)))} tok/s (${r2(vsOne)}× of 1 sequence); ` +
          `all ${c.sequences} channels ${r1(median(rs.map((x) => x.r.channels![c.sequences]!)))} tok/s; peak RSS ${Math.max(...rs.map((x) => x.r.peakRssMiB))} MiB; load ${rs.map((x) => x.load).join("/")}`,
      );
    }
  }
  console.log(JSON.stringify(results.map(({ r, ...rest }) => ({ ...rest, ...r }))));
}

/** The plain run: Friend only, with whichever binaries are present. */
async function friendOnly(): Promise<void> {
  const rounds = Number(arg("--rounds")) || 2;
  const types = (arg("--types") ?? "f16,q8_0").split(",") as SyntheticWeightType[];
  const binaries = (arg("--binaries")?.split(",") as Binary[] | undefined) ?? (findLocalBuild() ? ["native", "prebuilt"] : ["prebuilt"]);
  const files = models(types);
  for (let round = 1; round <= rounds; round++) {
    for (const type of types) {
      for (const [i, build] of (round % 2 ? binaries : [...binaries].reverse()).entries()) {
        const { load } = await quietEnough();
        const r = await friend({
          modelPath: files.model[type]!,
          loraPath: files.lora,
          build,
          threads,
          contextSize: CONTEXT_SIZE,
          sequences: SEQUENCES,
          measure: i === 0 && round === 1 ? ["speed", "channels", "lora", "turns"] : ["speed", "channels"],
          genTokens: GEN_TOKENS,
          reps: 2,
        });
        console.log(JSON.stringify({ round, type, load, ...r }));
      }
    }
  }
}

/** The cmake option sets `--build-options` compares (each is built once into bench/.cache). */
const CANDIDATE_OPTIONS: ReadonlyArray<Record<string, string>> = [
  { GGML_NATIVE: "ON", GGML_OPENMP: "ON" },
  { GGML_NATIVE: "ON", GGML_OPENMP: "OFF" },
  { GGML_NATIVE: "ON", GGML_OPENMP: "ON", GGML_LLAMAFILE: "OFF" },
];

async function buildOptions(): Promise<void> {
  const rounds = Number(arg("--rounds")) || 3;
  const types = (arg("--types") ?? "f16,q8_0").split(",") as SyntheticWeightType[];
  const files = models(types);
  const tools = CANDIDATE_OPTIONS.map((o) => ensureLlamaTools(o));
  const label = (t: LlamaTools) => Object.entries(t.cmakeOptions).map(([k, v]) => `${k}=${v}`).join(" ");
  const results: Array<{ type: string; options: string; round: number; load: number; othersBusy: number; prompt: number; generation: number }> = [];
  for (let round = 1; round <= rounds; round++) {
    for (const type of types) {
      for (const t of round % 2 ? tools : [...tools].reverse()) {
        const { load } = await quietEnough();
        const run = await llamaBench(t, files.model[type]!, { threads, promptTokens: 128, genTokens: GEN_TOKENS, genDepth: 0, reps: 2 });
        results.push({ type, options: label(t), round, load, othersBusy: run.othersBusy, prompt: run.result.promptTokensPerSecond, generation: run.result.generationTokensPerSecond });
        console.error(`[round ${round}, ${type}] ${label(t)}: load ${load}, others ${run.othersBusy}: ${JSON.stringify(run.result)}`);
      }
    }
  }
  console.error(`\nllama-bench (pp128, tg${GEN_TOKENS}, ${threads} threads), median of ${rounds} rounds, and per round as a ratio of the first option set:`);
  for (const type of types) {
    for (const t of tools) {
      const mine = results.filter((x) => x.type === type && x.options === label(t));
      const ratio = (key: "prompt" | "generation") =>
        r2(median(mine.map((x) => x[key] / results.find((y) => y.type === type && y.round === x.round && y.options === label(tools[0]!))![key])));
      console.error(`  ${type} ${label(t)}: prompt ${r1(median(mine.map((x) => x.prompt)))} (${ratio("prompt")}×), generation ${r1(median(mine.map((x) => x.generation)))} (${ratio("generation")}×); load ${mine.map((x) => x.load).join("/")}`);
    }
  }
  console.log(JSON.stringify(results));
}

/** Bytes per token of the saved states in a folder, from their records. */
function stateBytesPerToken(dir: string): number | undefined {
  let bytes = 0;
  let tokens = 0;
  for (const key of existsSync(dir) ? readdirSync(dir) : []) {
    for (const f of readdirSync(join(dir, key)).filter((n) => n.endsWith(".json"))) {
      const record = JSON.parse(readFileSync(join(dir, key, f), "utf8")) as { bytes: number; tokens: number[] };
      bytes += record.bytes;
      tokens += record.tokens.length;
    }
  }
  return tokens > 0 ? bytes / tokens : undefined;
}

async function returningBench(): Promise<void> {
  const rounds = Number(arg("--rounds")) || 1;
  const type = (arg("--types") ?? "q8_0").split(",")[0] as SyntheticWeightType;
  const build: Binary = (arg("--binaries")?.split(",")[0] as Binary | undefined) ?? (findLocalBuild() ? "native" : "prebuilt");
  const windowTokens = Number(process.env.BENCH_WINDOW) || 1000;
  const many = Number(arg("--channels")) || 16;
  const files = models([type]);
  // Long enough for a 1,000-token history, five turns and the replies.
  const contextSize = 2048;
  type Run = { name: string; returning: Omit<ReturningJob, "stateDir">; saved: boolean };
  const runs: Run[] = ([
    { name: "saved states, f16 KV", returning: { kvCacheType: "f16", windowTokens, manyChannels: many, turnsEach: 5 }, saved: true },
    // Without saved states every return evaluates the whole window: 5 channels and 3 turns show it (--baseline-channels N for more).
    { name: "no saved states, f16 KV", returning: { kvCacheType: "f16", windowTokens, manyChannels: Number(arg("--baseline-channels")) || SEQUENCES + 1, turnsEach: 3 }, saved: false },
    { name: "saved states, q8_0 KV", returning: { kvCacheType: "q8_0", windowTokens, manyChannels: SEQUENCES + 1, turnsEach: 3 }, saved: true },
    // --runs "name;name": only the runs whose names start so (the names hold commas).
  ] satisfies Run[]).filter((r) => !arg("--runs") || arg("--runs")!.split(";").some((n) => r.name.startsWith(n.trim())));
  const results: Array<{ run: string; round: number; load: number; busy: number; othersBusy: number; r: ReturningResult; bytesPerToken?: number; peakRssMiB: number }> = [];
  for (let round = 1; round <= rounds; round++) {
    for (const run of round % 2 ? runs : [...runs].reverse()) {
      const stateDir = join(CACHE, `states-${process.pid}-${round}-${results.length}`);
      rmSync(stateDir, { recursive: true, force: true });
      const { load, busy } = await quietEnough();
      const started = performance.now();
      const out = await friend({
        modelPath: files.model[type]!,
        build,
        threads,
        contextSize,
        sequences: SEQUENCES,
        measure: ["returning"],
        genTokens: 16,
        reps: 1,
        returning: { ...run.returning, ...(run.saved ? { stateDir } : {}) },
      });
      const bytesPerToken = stateBytesPerToken(stateDir);
      rmSync(stateDir, { recursive: true, force: true });
      console.error(`[round ${round}] ${run.name}: ${r1((performance.now() - started) / 1000)} s, load ${load}, others busy ${busy} before, ${out.othersBusy} during`);
      results.push({ run: run.name, round, load, busy, othersBusy: out.othersBusy, r: out.returning!, bytesPerToken, peakRssMiB: out.peakRssMiB });
    }
  }

  const ms = (n: number) => `${Math.round(n)} ms`;
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const later = (fs: readonly TurnFigure[]) => fs.filter((f) => f.turn > 1);
  const lines: string[] = [`
Returning channels (${type} model, ${build} binary, ${threads} threads, ${SEQUENCES} sequences × ${contextSize}, history ≈ ${windowTokens} tokens a channel, ${rounds} round(s); medians over rounds):`];
  const summary: Record<string, unknown> = { machine: { cpus: availableParallelism(), threads, node: process.version }, type, build, windowTokens, rounds };
  for (const run of runs) {
    const rs = results.filter((x) => x.run === run.name);
    const fig = (f: (r: ReturningResult) => number) => median(rs.map((x) => f(x.r)));
    const warmMs = fig((r) => median(later(r.warm).map((f) => f.ttftMs)));
    const out = {
      coldMs: fig((r) => median(r.warm.filter((f) => f.turn === 1).map((f) => f.ttftMs))),
      coldPromptTokens: fig((r) => median(r.warm.filter((f) => f.turn === 1).map((f) => f.promptTokens))),
      warmMs,
      warmEvaluated: fig((r) => median(later(r.warm).map((f) => f.evaluated))),
      returnMs: fig((r) => median(later(r.many).map((f) => f.ttftMs))),
      returnPromptTokens: fig((r) => median(later(r.many).map((f) => f.promptTokens))),
      returnEvaluated: fig((r) => median(later(r.many).map((f) => f.evaluated))),
      returnOverWarm: r2(fig((r) => median(later(r.many).map((f) => f.ttftMs)) / median(later(r.warm).map((f) => f.ttftMs)))),
      manyOverFour: r2(fig((r) => mean(later(r.many).map((f) => f.ttftMs)) / mean(later(r.warm).map((f) => f.ttftMs)))),
      manyAllTurnsOverFour: r2(fig((r) => mean(r.many.map((f) => f.ttftMs)) / mean(r.warm.map((f) => f.ttftMs)))),
      restartMs: fig((r) => median(r.afterRestart.map((f) => f.ttftMs))),
      restartEvaluated: fig((r) => median(r.afterRestart.map((f) => f.evaluated))),
      restartOverWarm: r2(fig((r) => median(r.afterRestart.map((f) => f.ttftMs)) / median(r.warmAfterRestart.map((f) => f.ttftMs)))),
      generationTps: fig((r) => median(r.warm.map((f) => f.generationTps))),
      saveAllMs: fig((r) => r.saveAllMs),
      savedStates: rs[0]!.r.savedStates,
      bytesPerToken: rs[0]!.bytesPerToken,
      peakRssMiB: Math.max(...rs.map((x) => x.peakRssMiB)),
      load: rs.map((x) => `${x.load} (others ${Math.round(x.busy * 100)}% before, ${Math.round(x.othersBusy * 100)}% during)`),
      firstReplies: rs[0]!.r.warm.filter((f) => f.turn === 1).map((f) => f.text),
    };
    const channels = run.returning.manyChannels;
    summary[run.name] = out;
    lines.push(`  ${run.name}:`);
    lines.push(`    cold (whole history, ${out.coldPromptTokens} tokens) ${ms(out.coldMs)}; warm (turns 2–5, ${out.warmEvaluated} tokens evaluated) ${ms(out.warmMs)}`);
    lines.push(`    returning after eviction (turns 2–${run.returning.turnsEach} of ${channels} channels on ${SEQUENCES} sequences): median ${ms(out.returnMs)} = ${out.returnOverWarm}× warm (${out.returnEvaluated} of ${out.returnPromptTokens} tokens evaluated)`);
    lines.push(`    mean time to first token, ${channels} channels on ${SEQUENCES} against 4 on 4: ${out.manyOverFour}× (turns 2–${run.returning.turnsEach}), ${out.manyAllTurnsOverFour}× (all turns)`);
    lines.push(`    first turn after a restart: ${ms(out.restartMs)} = ${out.restartOverWarm}× warm (${out.restartEvaluated} tokens evaluated); saving ${SEQUENCES} channels at the stop took ${ms(out.saveAllMs)}`);
    lines.push(`    generation ${r1(out.generationTps)} tok/s; peak RSS ${out.peakRssMiB} MiB${out.bytesPerToken ? `; state ${r1(out.bytesPerToken / 1024)} KiB a token` : ""}${out.savedStates ? `; ${out.savedStates.files} states, ${r1(out.savedStates.bytes / 2 ** 20)} MiB of ${r1(out.savedStates.budgetBytes / 2 ** 20)} MiB` : ""}`);
    lines.push(`    load: ${out.load.join(" / ")}`);
  }
  const f16 = summary["saved states, f16 KV"] as { firstReplies: string[] } | undefined;
  const q8 = summary["saved states, q8_0 KV"] as { firstReplies: string[] } | undefined;
  if (f16 && q8) lines.push(`  q8_0 KV against f16 KV: ${f16.firstReplies.filter((t, i) => t === q8.firstReplies[i]).length} of ${f16.firstReplies.length} first replies (16 greedy tokens) identical`);
  console.log(JSON.stringify(summary, null, 2));
  console.error(lines.join("\n"));
}

if (flag("--returning")) await returningBench();
else if (flag("--vs-llama-cpp")) await vsLlamaCpp();
else if (flag("--build-options")) await buildOptions();
else if (flag("--sweep")) await sweep();
else await friendOnly();
