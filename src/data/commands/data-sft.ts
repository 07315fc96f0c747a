import { resolve } from "node:path";
import { ConfigError } from "../../config/errors.ts";
import { DEFAULT_SETTINGS_PATH, loadSettings, systemPromptFor } from "../../config/settings.ts";
import { CommandError, UsageError } from "../../commandline/errors.ts";
import { HOLDOUT_OPTIONS, HOLDOUT_USAGE, trainingScenes } from "../holdout.ts";
import { DEFAULT_FINETUNE_MODEL, FINETUNE_MODELS, MIN_TRAINING_EXAMPLES } from "../openai-models.ts";
import { DEFAULT_PAIR_FILTER, findExchangePairs, type PairFilter } from "../sft/pairs.ts";
import { sampleInOrder } from "../sft/sampling.ts";
import { estimateTrainingCost, formatTrainingCost } from "../sft/training-cost.ts";
import { checkTrainingExample, loadExampleTokenizer, trainingExampleFor, type TrainingExample } from "../sft/training-example.ts";
import type { CommandIo } from "../../commandline/io.ts";
import { characterListOption, finetuneModelOption } from "./options.ts";
import { integerOption, parseCommandArgs, requiredOption } from "../../commandline/args.ts";
import { TRANSCRIPT_INPUT_OPTIONS, TRANSCRIPT_INPUT_USAGE, readTranscriptFor, writeJsonl } from "./transcript-input.ts";

/** The original experiment trained on 50 examples. */
export const DEFAULT_EXAMPLE_COUNT = 50;

export const DATA_SFT_USAGE = `Usage: friend data sft --input PATH --out FILE.jsonl [options]

Builds OpenAI chat fine-tuning examples {"messages":[system, user, assistant]}: two consecutive
lines by different main characters in one scene, names removed, under the persona's system prompt.

${TRANSCRIPT_INPUT_USAGE}
  --count N        examples to write (default ${DEFAULT_EXAMPLE_COUNT}, as in the original)
  --seed N         seed for choosing them; the same seed gives the same file (default 1)
  --min-chars N    shortest line allowed on either side (default ${DEFAULT_PAIR_FILTER.minChars})
  --max-chars N    longest line allowed on either side (default ${DEFAULT_PAIR_FILTER.maxChars})
  --characters L   comma-separated main characters allowed in a pair (default all six)
  --reply-as L     main characters whose lines may be the reply (default: --characters)
  --model NAME     tokenizer and limits for the summary: ${Object.keys(FINETUNE_MODELS).join(" or ")} (default ${DEFAULT_FINETUNE_MODEL})
  --settings FILE  settings with the persona's system prompt (default config/friend.json)
${HOLDOUT_USAGE}`;

export async function runDataSft(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...TRANSCRIPT_INPUT_OPTIONS,
    count: { type: "string" },
    seed: { type: "string" },
    "min-chars": { type: "string" },
    "max-chars": { type: "string" },
    characters: { type: "string" },
    "reply-as": { type: "string" },
    model: { type: "string", default: DEFAULT_FINETUNE_MODEL },
    settings: { type: "string" },
    ...HOLDOUT_OPTIONS,
  });
  if (values.help) {
    io.out(DATA_SFT_USAGE);
    return 0;
  }
  const input = requiredOption(values.input, "input");
  const out = requiredOption(values.out, "out");
  const count = integerOption(values.count, "count", DEFAULT_EXAMPLE_COUNT, 1, 1_000_000);
  const seed = integerOption(values.seed, "seed", 1, 0, 2 ** 32 - 1);
  const holdoutSeed = integerOption(values["holdout-seed"], "holdout-seed", 1, 0, 2 ** 32 - 1);
  const model = finetuneModelOption(values.model);
  const characters = characterListOption(values.characters, "characters") ?? DEFAULT_PAIR_FILTER.characters;
  const filter: PairFilter = {
    characters,
    replyAs: characterListOption(values["reply-as"], "reply-as") ?? characters,
    minChars: integerOption(values["min-chars"], "min-chars", DEFAULT_PAIR_FILTER.minChars, 1, 100_000),
    maxChars: integerOption(values["max-chars"], "max-chars", DEFAULT_PAIR_FILTER.maxChars, 1, 100_000),
  };
  if (filter.minChars > filter.maxChars) throw new UsageError("--min-chars is larger than --max-chars");
  const systemPrompt = trainingSystemPrompt(values.settings ? resolve(io.cwd, values.settings) : DEFAULT_SETTINGS_PATH);

  const transcript = readTranscriptFor(io, input, values.format);
  const pairs = findExchangePairs(trainingScenes(transcript.scenes, values["holdout-episodes"], holdoutSeed, io.out), filter);
  if (pairs.length === 0) {
    throw new CommandError("no pairs of consecutive lines by two different main characters; check --characters, --reply-as and the length bounds");
  }
  const chosen = sampleInOrder(pairs, count, seed);
  io.out(`pairs: ${pairs.length} found, ${chosen.length} chosen with seed ${seed}${chosen.length < count ? ` (fewer than the ${count} asked for)` : ""}`);

  const tokenizer = await loadExampleTokenizer(model);
  const examples: TrainingExample[] = [];
  const exampleTokens: number[] = [];
  for (const pair of chosen) {
    const example = trainingExampleFor(pair, systemPrompt);
    const check = checkTrainingExample(example, tokenizer);
    if (check.ok) {
      examples.push(example);
      exampleTokens.push(check.tokens);
    } else {
      io.err(`rejected a pair from ${pair.episode}: ${check.reason}`);
    }
  }
  writeJsonl(io, out, examples);
  io.out(`wrote ${out}`);
  for (const line of formatTrainingCost(estimateTrainingCost(exampleTokens, model))) io.out(line);
  if (examples.length < MIN_TRAINING_EXAMPLES) {
    io.err(`warning: OpenAI needs at least ${MIN_TRAINING_EXAMPLES} examples to fine-tune; raise --count or loosen the filters`);
  }
  return 0;
}

/** The prompt the original experiment trained with: the persona addressing its training partner. */
function trainingSystemPrompt(settingsPath: string): string {
  try {
    const { persona } = loadSettings(settingsPath);
    return systemPromptFor(persona, persona.trainingPartner);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`cannot read the persona: ${err.problems.join("; ")}`);
    throw err;
  }
}
