import { resolve } from "node:path";
import { describeModelSource, parseModelSource, type ModelSource } from "../../core/model-source.ts";
import { CommandError } from "../../commandline/errors.ts";
import { HOLDOUT_OPTIONS, HOLDOUT_USAGE, trainingScenes } from "../holdout.ts";
import { DEFAULT_CHUNK_TOKENS, chunkStats, dialogueRuns, packChunks } from "../chunks/dialogue-chunks.ts";
import { approximateTokenCounter, loadModelTokenCounter, type TokenCounter } from "../chunks/token-counter.ts";
import { envWithDotenv, type CommandIo } from "../../commandline/io.ts";
import { integerOption, parseCommandArgs, requiredOption } from "../../commandline/args.ts";
import { TRANSCRIPT_INPUT_OPTIONS, TRANSCRIPT_INPUT_USAGE, readTranscriptFor, writeJsonl } from "./transcript-input.ts";

export const DATA_CHUNKS_USAGE = `Usage: friend data chunks --input PATH --out FILE.jsonl [options]

Builds LoRA training text {"text": ...}: runs of consecutive main-character lines as
"Name: line", cut between lines into chunks of at most N tokens.

${TRANSCRIPT_INPUT_USAGE}
  --chunk-tokens N         tokens per chunk (default ${DEFAULT_CHUNK_TOKENS}, as in the original)
  --tokenizer-model FILE   the base model's .gguf, for exact token counts (default: LLAMA_MODEL_PATH;
                           without either, counts are an approximation and say so)
${HOLDOUT_USAGE}`;

export async function runDataChunks(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...TRANSCRIPT_INPUT_OPTIONS,
    "chunk-tokens": { type: "string" },
    "tokenizer-model": { type: "string" },
    ...HOLDOUT_OPTIONS,
  });
  if (values.help) {
    io.out(DATA_CHUNKS_USAGE);
    return 0;
  }
  const input = requiredOption(values.input, "input");
  const out = requiredOption(values.out, "out");
  const chunkTokens = integerOption(values["chunk-tokens"], "chunk-tokens", DEFAULT_CHUNK_TOKENS, 8, 1_000_000);
  const holdoutSeed = integerOption(values["holdout-seed"], "holdout-seed", 1, 0, 2 ** 32 - 1);
  const modelPath = values["tokenizer-model"] ?? tokenizerFromEnv(io);

  const transcript = readTranscriptFor(io, input, values.format);
  const runs = dialogueRuns(trainingScenes(transcript.scenes, values["holdout-episodes"], holdoutSeed, io.out));
  if (runs.length === 0) throw new CommandError("no lines by the six main characters; nothing to train on");

  const counter: TokenCounter = modelPath ? await loadModelTokenCounter(resolve(io.cwd, modelPath)) : approximateTokenCounter;
  try {
    const chunks = packChunks(runs, counter, chunkTokens);
    writeJsonl(io, out, chunks.map((text) => ({ text })));
    const stats = chunkStats(runs, chunks, counter, chunkTokens);
    const approx = counter.exact ? "" : "~";
    io.out(`wrote ${out}`);
    io.out(`chunks: ${stats.chunks} from ${stats.lines} lines in ${stats.runs} runs`);
    io.out(`tokens per chunk: max ${approx}${stats.maxTokens}, mean ${approx}${stats.meanTokens} (limit ${chunkTokens})`);
    io.out(`token counts: ${counter.source}`);
    if (stats.overLimit) io.err(`warning: ${stats.overLimit} chunks are over ${chunkTokens} tokens (a single word longer than a chunk)`);
  } finally {
    await counter.dispose();
  }
  return 0;
}

/** LLAMA_MODEL_PATH when it names a file; an hf: URI or URL is a download, not a tokenizer at hand. */
function tokenizerFromEnv(io: CommandIo): string | undefined {
  const value = envWithDotenv(io, ".env").LLAMA_MODEL_PATH;
  if (!value) return undefined;
  const source = safeParse(value);
  if (source?.kind === "file") return value;
  io.err(`LLAMA_MODEL_PATH is ${source ? describeModelSource(source) : value}, not a file: counting tokens approximately. Give --tokenizer-model with the downloaded .gguf (in models/) for exact counts.`);
  return undefined;
}

function safeParse(value: string): ModelSource | undefined {
  try {
    return parseModelSource(value);
  } catch {
    return undefined;
  }
}
