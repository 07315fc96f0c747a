import { FINETUNE_MODELS, type FinetuneModel } from "../openai-models.ts";

/**
 * The epochs OpenAI picks when none are given: 3, raised for small sets so they see
 * about 100 examples in all, lowered for big ones to stay near 25,000.
 */
export function defaultEpochs(examples: number): number {
  if (examples <= 0) return 3;
  if (examples * 3 < 100) return Math.min(25, Math.floor(100 / examples));
  if (examples * 3 > 25_000) return Math.max(1, Math.floor(25_000 / examples));
  return 3;
}

export interface TrainingCost {
  model: FinetuneModel;
  examples: number;
  totalTokens: number;
  epochs: number;
  /** True when `epochs` is OpenAI's default rather than one the user chose. */
  defaultEpochs: boolean;
  /** Σ min(limit, tokens) × epochs: what OpenAI bills for training. */
  billedTokens: number;
}

export function estimateTrainingCost(exampleTokens: readonly number[], model: FinetuneModel, epochs?: number): TrainingCost {
  const limit = FINETUNE_MODELS[model].exampleTokenLimit;
  let totalTokens = 0;
  let billedPerEpoch = 0;
  for (const tokens of exampleTokens) {
    totalTokens += tokens;
    billedPerEpoch += Math.min(limit, tokens);
  }
  const chosenEpochs = epochs ?? defaultEpochs(exampleTokens.length);
  return {
    model,
    examples: exampleTokens.length,
    totalTokens,
    epochs: chosenEpochs,
    defaultEpochs: epochs === undefined,
    billedTokens: billedPerEpoch * chosenEpochs,
  };
}

export function formatTrainingCost(cost: TrainingCost): string[] {
  const n = (x: number) => x.toLocaleString("en-US");
  return [
    `examples: ${n(cost.examples)}`,
    `tokens: ${n(cost.totalTokens)} (${FINETUNE_MODELS[cost.model].encoding}, as ${cost.model} counts them)`,
    `epochs: ${cost.epochs}${cost.defaultEpochs ? ` (OpenAI's default for ${n(cost.examples)} examples)` : ""}`,
    `estimated training tokens: ${n(cost.billedTokens)} (each example up to ${n(FINETUNE_MODELS[cost.model].exampleTokenLimit)} tokens, × ${cost.epochs} epochs)`,
  ];
}
