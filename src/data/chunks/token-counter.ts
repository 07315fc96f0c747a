import { existsSync } from "node:fs";
import { UsageError } from "../../commandline/errors.ts";

/** Counts tokens for chunking; `exact` is false for the character-based estimate. */
export interface TokenCounter {
  readonly exact: boolean;
  /** Where the counts come from, for the summary. */
  readonly source: string;
  count(text: string): number;
  dispose(): Promise<void>;
}

/**
 * Llama-2's SentencePiece averages roughly 3.5-4 characters per token on English dialogue;
 * taking the low end keeps estimated chunks from overshooting the real limit.
 */
export const APPROX_CHARS_PER_TOKEN = 3.5;

export const approximateTokenCounter: TokenCounter = {
  exact: false,
  source: `APPROXIMATE (${APPROX_CHARS_PER_TOKEN} characters per token; give --tokenizer-model or LLAMA_MODEL_PATH for exact counts)`,
  count: (text) => Math.ceil(text.length / APPROX_CHARS_PER_TOKEN),
  dispose: async () => {},
};

/**
 * The base model's own tokenizer, loaded vocabulary-only (no weights) through node-llama-cpp.
 * Imported lazily so the other commands never load the native addon.
 */
export async function loadModelTokenCounter(modelPath: string): Promise<TokenCounter> {
  if (!existsSync(modelPath)) throw new UsageError(`tokenizer model ${modelPath} does not exist; give the base model's .gguf file`);
  // The process-wide runtime the local backend uses too: a second one would take over llama.cpp's log.
  const { llamaRuntime } = await import("../../backends/local/runtime.ts");
  const llama = await llamaRuntime({ gpu: false, threads: 1 });
  let model;
  try {
    model = await llama.loadModel({ modelPath, vocabOnly: true });
  } catch (err) {
    throw new UsageError(`cannot load the tokenizer from ${modelPath} (${(err as Error).message}); is it a GGUF model?`);
  }
  const loaded = model;
  return {
    exact: true,
    source: `the tokenizer of ${modelPath}`,
    count: (text) => loaded.tokenize(text).length,
    dispose: () => loaded.dispose(),
  };
}
