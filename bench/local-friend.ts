/**
 * One measurement of Friend's local path (LocalBackend, exactly as Friend runs it), in a process
 * of its own so its peak memory is its own. bench/local.ts starts it with a JSON job as the only
 * argument and reads one JSON result line from stdout.
 */
import { availableParallelism } from "node:os";
import type { GenerateRequest } from "../src/core/backend.ts";
import { LocalBackend, type LocalBackendOptions, type LocalGenerationStats } from "../src/backends/local.ts";
import { loadSettings } from "../src/config/settings.ts";
import type { Turn } from "../src/core/turn.ts";
import { cleanReply } from "../src/reply/clean.ts";
import { stopSequences } from "../src/reply/speakers.ts";

export type FriendMeasure = "speed" | "lora" | "channels" | "turns" | "returning";

export interface FriendJob {
  modelPath: string;
  loraPath?: string;
  build: "native" | "prebuilt";
  threads: number;
  contextSize: number;
  sequences: number;
  measure: FriendMeasure[];
  /** Reply tokens per speed or channel measurement (llama-bench's -n). */
  genTokens: number;
  /** Repetitions of the speed measurement; the best is kept (as for llama-bench's samples). */
  reps: number;
  /** For "returning": where states are saved (none: the run without persistence), the KV cache type, the window. */
  returning?: ReturningJob;
}

export interface ReturningJob {
  stateDir?: string;
  kvCacheType: "f16" | "q8_0";
  /** Prompt tokens of each channel's history before its first measured turn (about). */
  windowTokens: number;
  /** Channels taking turns on the second backend's sequences (more than `sequences`, so they evict each other). */
  manyChannels: number;
  /** Turns per channel in the 4-on-4 and many-channels parts (the first is the cold one). */
  turnsEach: number;
}

/** One measured turn. */
export interface TurnFigure {
  channel: string;
  turn: number;
  ttftMs: number;
  promptTokens: number;
  evaluated: number;
  restored: number;
  generationTps: number;
  text: string;
}

export interface ReturningResult {
  /** `sequences` channels on `sequences` sequences: no eviction; turn 1 evaluates the whole history. */
  warm: TurnFigure[];
  /** `manyChannels` channels taking turns on as many sequences: every turn after the first returns after eviction. */
  many: TurnFigure[];
  /** After saveState, close and a new backend on the same folder: the next turn of the channels that held its sequences. */
  afterRestart: TurnFigure[];
  /** The warm channels' turns alternating with those. */
  warmAfterRestart: TurnFigure[];
  savedStates?: { files: number; bytes: number; budgetBytes: number };
  /** How long the graceful stop's saveState took for the four channels. */
  saveAllMs: number;
}

export interface SpeedFigures {
  promptTokens: number;
  promptTokensPerSecond: number;
  /** Greedy, no stop sequences: the same work as llama-bench's generation. */
  generationTokensPerSecond: number;
  /** As Friend runs by default: config/friend.json's temperature and top-p (fixed seed), the cast's stop sequences. */
  configuredTokensPerSecond?: number;
}

export interface FriendResult {
  binary: string;
  speed?: SpeedFigures;
  /** The same as `speed`, with the LoRA adapter (measured alternately with a base-only backend). */
  lora?: { base: SpeedFigures; adapter: SpeedFigures };
  /** Total generation tokens/s with 1 and with `sequences` channels generating at once. */
  channels?: Record<number, number>;
  turns?: { turn1Ms: number; turn20Ms: number; turn20NoReuseMs: number; evaluated: number[]; promptTokens20: number };
  returning?: ReturningResult;
  peakRssMiB: number;
}

const { persona, cast, generation } = loadSettings();
let clock = 0;
const turn = (author: string, text: string): Turn => ({ author, text, fromFriend: author === persona.name, at: ++clock });

/** About 128 prompt tokens on the synthetic vocab (llama-bench's -p 128). */
const WORDS = "so what do you think about the new coffee place downtown is it any good at all i cannot believe you said that to my mother".split(" ");
function sentence(seed: number, words: number): string {
  return Array.from({ length: words }, (_, i) => WORDS[(seed * 7 + i * 3) % WORDS.length]).join(" ");
}

function request(channelId: string, turns: readonly Turn[], maxTokens: number): GenerateRequest {
  return { channelId, persona, cast, turns, stop: [], maxTokens, temperature: 0, topP: 1, signal: new AbortController().signal };
}

async function generate(backend: LocalBackend, req: GenerateRequest): Promise<{ stats: LocalGenerationStats; ms: number; text: string }> {
  const start = performance.now();
  const gen = backend.generate(req);
  let text = "";
  for (;;) {
    const next = await gen.next();
    if (next.done) return { stats: next.value, ms: performance.now() - start, text };
    text += next.value;
  }
}

/**
 * A fresh channel: the whole prompt is evaluated, then `genTokens` are generated, greedy; with
 * `configured`, also as Friend samples by default. Best of `reps` each, alternating.
 */
async function speed(backend: LocalBackend, job: FriendJob, label: string, configured = false): Promise<SpeedFigures> {
  let best: SpeedFigures | undefined;
  let configuredBest = 0;
  for (let rep = 0; rep < job.reps; rep++) {
    const channel = `${label}-speed-${rep}`;
    const r = await generate(backend, request(channel, [turn("Alice", sentence(rep, 40))], job.genTokens + 1));
    await backend.resetChannel(channel);
    const figures = {
      promptTokens: r.stats.evaluatedPromptTokens,
      promptTokensPerSecond: r.stats.evaluatedPromptTokens / (r.stats.firstTokenMs / 1000),
      generationTokensPerSecond: generationRate(r),
    };
    best = best ? bestOf(best, figures) : figures;
    if (configured) {
      const sampled = await generate(backend, {
        ...request(`${channel}-configured`, [turn("Alice", sentence(rep, 40))], job.genTokens + 1),
        temperature: generation.temperature,
        topP: generation.topP,
        seed: rep + 1,
        stop: stopSequences(persona.name, ["Alice"], cast, 16),
      });
      await backend.resetChannel(`${channel}-configured`);
      // The stop scanner runs on every token; a reply cut short (end-of-text or a stop) is too short to time.
      if (sampled.stats.completionTokens > job.genTokens / 2) configuredBest = Math.max(configuredBest, generationRate(sampled));
    }
  }
  return configured ? { ...best!, configuredTokensPerSecond: configuredBest || Number.NaN } : best!;
}

function generationRate(r: { stats: LocalGenerationStats; ms: number }): number {
  return (r.stats.completionTokens - 1) / ((r.ms - r.stats.firstTokenMs) / 1000);
}

/** Total generation speed of 1 and of N channels at once, each with its prompt already cached. */
async function channels(backend: LocalBackend, job: FriendJob): Promise<Record<number, number>> {
  const ids = Array.from({ length: job.sequences }, (_, i) => `ch-${i}`);
  const prompts = new Map(ids.map((id, i) => [id, [turn("Alice", sentence(i + 10, 40))]]));
  await Promise.all(ids.map((id) => generate(backend, request(id, prompts.get(id)!, 1))));
  const total = async (some: string[]) => {
    const start = performance.now();
    const runs = await Promise.all(some.map((id) => generate(backend, request(id, prompts.get(id)!, job.genTokens + 1))));
    const tokens = runs.reduce((sum, r) => sum + r.stats.completionTokens, 0);
    return tokens / ((performance.now() - start) / 1000);
  };
  const out: Record<number, number> = {};
  for (let rep = 0; rep < job.reps; rep++) {
    out[1] = Math.max(out[1] ?? 0, await total(ids.slice(0, 1)));
    if (ids.length > 1) out[ids.length] = Math.max(out[ids.length] ?? 0, await total(ids));
  }
  return out;
}

/** A 20-turn conversation in one channel: time to the first token at turn 1 and turn 20, and turn 20 with no cache. */
async function turns(backend: LocalBackend): Promise<NonNullable<FriendResult["turns"]>> {
  let window: Turn[] = [];
  const ttft: number[] = [];
  const evaluated: number[] = [];
  let promptTokens20 = 0;
  for (let i = 1; i <= 20; i++) {
    window = [...window, turn("Alice", `${sentence(i, 12)} (${i})`)];
    const r = await generate(backend, request("conversation", window, 8));
    ttft.push(r.stats.firstTokenMs);
    evaluated.push(r.stats.evaluatedPromptTokens);
    promptTokens20 = r.stats.promptTokens;
    // The model's own reply, cleaned as the conversation engine cleans it, goes into the window.
    window = [...window, turn(persona.name, cleanReply(r.text, { personaName: persona.name, cast }) || "hm")];
  }
  backend.resetChannel("conversation");
  const cold = await generate(backend, request("conversation", window.slice(0, -1), 8));
  return { turn1Ms: ttft[0]!, turn20Ms: ttft[19]!, turn20NoReuseMs: cold.stats.firstTokenMs, evaluated, promptTokens20 };
}

/**
 * A channel's history of about `tokens` prompt tokens: user lines and Friend's replies, written
 * out (not generated), so every run and every channel starts from the same window.
 */
function history(channel: number, tokens: number): Turn[] {
  // About 30 tokens a turn on the synthetic vocab.
  return Array.from({ length: Math.max(1, Math.round(tokens / 30)) }, (_, i) =>
    turn(i % 2 === 0 ? `User${channel}` : persona.name, `${sentence(channel * 31 + i, 12)} (${i})`),
  );
}

function figure(channel: string, turnNo: number, r: { stats: LocalGenerationStats; ms: number; text: string }): TurnFigure {
  return {
    channel,
    turn: turnNo,
    ttftMs: r.stats.firstTokenMs,
    promptTokens: r.stats.promptTokens,
    evaluated: r.stats.evaluatedPromptTokens,
    restored: r.stats.restoredPromptTokens,
    generationTps: (r.stats.completionTokens - 1) / ((r.ms - r.stats.firstTokenMs) / 1000),
    text: r.text,
  };
}

/**
 * Issue 21's scenarios, in one process, on two backends whose turns alternate so that both meet
 * the same load from elsewhere: `sequences` warm channels on a backend of their own (never
 * evicted), and `manyChannels` channels taking turns on another with as many sequences, so each
 * of their turns after the first is a return after eviction. Then a restart of the second
 * backend (saveState, close, a new one on the same folder), and each side's next turns.
 */
async function returning(open: (extra: Partial<LocalBackendOptions>) => Promise<LocalBackend>, job: FriendJob): Promise<ReturningResult> {
  const rj = job.returning!;
  const extra: Partial<LocalBackendOptions> = { kvCacheType: rj.kvCacheType, ...(rj.stateDir ? { stateDir: rj.stateDir } : {}) };
  const warmBackend = await open({ kvCacheType: rj.kvCacheType });
  let manyBackend = await open(extra);
  const windows = new Map<string, Turn[]>();
  const take = async (backend: LocalBackend, channel: string, turnNo: number, index: number): Promise<TurnFigure> => {
    const window = [...(windows.get(channel) ?? history(index, rj.windowTokens)), turn(`User${index}`, `${sentence(index * 7 + turnNo, 12)} (turn ${turnNo})`)];
    const r = await generate(backend, request(channel, window, job.genTokens));
    windows.set(channel, [...window, turn(persona.name, cleanReply(r.text, { personaName: persona.name, cast }) || "hm")]);
    return figure(channel, turnNo, r);
  };
  const warmIds = Array.from({ length: job.sequences }, (_, i) => `warm-${i}`);
  const manyIds = Array.from({ length: rj.manyChannels }, (_, i) => `many-${i}`);
  const perWarm = Math.ceil(manyIds.length / warmIds.length);
  const warm: TurnFigure[] = [];
  const many: TurnFigure[] = [];
  const round = async (turnNo: number, manyOf: (i: number) => string[], into: { warm: TurnFigure[]; many: TurnFigure[] }) => {
    for (const [i, id] of warmIds.entries()) {
      into.warm.push(await take(warmBackend, id, turnNo, i));
      for (const m of manyOf(i)) into.many.push(await take(manyBackend, m, turnNo, 100 + manyIds.indexOf(m)));
    }
  };
  const group = (i: number) => manyIds.slice(i * perWarm, (i + 1) * perWarm);
  for (let t = 1; t <= rj.turnsEach; t++) await round(t, group, { warm, many });

  // The restart: the graceful stop's save, a new backend, and the next turn of the channels that held the sequences.
  const savedAt = performance.now();
  await manyBackend.saveState(Date.now() + 120_000);
  const saveAllMs = performance.now() - savedAt;
  const savedStates = manyBackend.describe().savedStates;
  await manyBackend.close();
  manyBackend = await open(extra);
  const lastHolders = manyIds.slice(-job.sequences);
  const after = { warm: [] as TurnFigure[], many: [] as TurnFigure[] };
  await round(rj.turnsEach + 1, (i) => (lastHolders[i] ? [lastHolders[i]!] : []), after);
  await manyBackend.close();
  await warmBackend.close();
  return { warm, many, afterRestart: after.many, warmAfterRestart: after.warm, savedStates, saveAllMs };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as FriendJob;
  const options: LocalBackendOptions = {
    modelPath: job.modelPath,
    threads: job.threads || availableParallelism(),
    gpuLayers: 0,
    contextSize: job.contextSize,
    sequences: job.sequences,
    build: job.build,
  };
  const result: Partial<FriendResult> = {};
  const open = async (loraPath?: string, extra: Partial<LocalBackendOptions> = {}) => {
    const backend = new LocalBackend({ ...options, ...(loraPath ? { loraPath } : {}), ...extra });
    await backend.prepare();
    result.binary ??= backend.describe().binary;
    // Warm-up, as llama-bench does one: the first decode pays for page faults and thread start-up.
    await generate(backend, request("warm-up", [turn("Alice", sentence(99, 20))], 4));
    backend.resetChannel("warm-up");
    return backend;
  };

  if (job.measure.includes("speed") || job.measure.includes("channels")) {
    const base = await open();
    if (job.measure.includes("speed")) result.speed = await speed(base, job, "base", true);
    if (job.measure.includes("channels")) result.channels = await channels(base, job);
    await base.close();
  }
  if (job.measure.includes("lora") && job.loraPath) {
    // Base and adapter alternate, so a burst of load elsewhere hits both.
    let lora: FriendResult["lora"];
    for (let rep = 0; rep < 2; rep++) {
      const base = await open();
      const b = await speed(base, { ...job, reps: 1 }, `lora-base-${rep}`);
      await base.close();
      const tuned = await open(job.loraPath);
      const a = await speed(tuned, { ...job, reps: 1 }, `lora-adapter-${rep}`);
      await tuned.close();
      lora = lora ? { base: bestOf(lora.base, b), adapter: bestOf(lora.adapter, a) } : { base: b, adapter: a };
    }
    result.lora = lora;
  }
  if (job.measure.includes("turns")) {
    const tuned = await open(job.loraPath);
    result.turns = await turns(tuned);
    await tuned.close();
  }
  if (job.measure.includes("returning")) {
    result.returning = await returning((extra) => open(job.loraPath, extra), job);
  }
  result.peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  process.stdout.write(JSON.stringify(result) + "\n");
}

function bestOf(a: SpeedFigures, b: SpeedFigures): SpeedFigures {
  return {
    promptTokens: b.promptTokens,
    promptTokensPerSecond: Math.max(a.promptTokensPerSecond, b.promptTokensPerSecond),
    generationTokensPerSecond: Math.max(a.generationTokensPerSecond, b.generationTokensPerSecond),
  };
}

await main();
