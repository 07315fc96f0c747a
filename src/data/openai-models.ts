/**
 * The OpenAI models `friend` can fine-tune, with the tokenizer each one counts with
 * and the most tokens one training example may hold.
 */
export const FINETUNE_MODELS = {
  "gpt-3.5-turbo-0125": { encoding: "cl100k_base", exampleTokenLimit: 16_385 },
  "gpt-4o-mini-2024-07-18": { encoding: "o200k_base", exampleTokenLimit: 65_536 },
} as const;

export type FinetuneModel = keyof typeof FINETUNE_MODELS;
/** The model the original experiment fine-tuned. */
export const DEFAULT_FINETUNE_MODEL: FinetuneModel = "gpt-3.5-turbo-0125";

export function isFinetuneModel(name: string): name is FinetuneModel {
  return Object.hasOwn(FINETUNE_MODELS, name);
}

/** OpenAI rejects a training file with fewer examples than this. */
export const MIN_TRAINING_EXAMPLES = 10;
