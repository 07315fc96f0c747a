import { resolve } from "node:path";
import { ConfigError } from "../../config/errors.ts";
import { DEFAULT_SETTINGS_PATH, loadSettings, type Settings } from "../../config/settings.ts";
import { CommandError, UsageError } from "../../commandline/errors.ts";
import { evalItemsFrom } from "../eval-items.ts";
import { HOLDOUT_OPTIONS, HOLDOUT_USAGE, chooseHoldout, episodesOf, parseHoldoutOption, splitHoldout } from "../holdout.ts";
import { DEFAULT_PAIR_FILTER, type PairFilter } from "../sft/pairs.ts";
import { sampleInOrder } from "../sft/sampling.ts";
import type { CommandIo } from "../../commandline/io.ts";
import { characterListOption } from "./options.ts";
import { integerOption, parseCommandArgs, requiredOption } from "../../commandline/args.ts";
import { TRANSCRIPT_INPUT_OPTIONS, TRANSCRIPT_INPUT_USAGE, readTranscriptFor, writeJsonl } from "./transcript-input.ts";

/** Enough items to tell a 10-point difference in a rate from noise (see docs/EVAL.md). */
export const DEFAULT_EVAL_COUNT = 200;

export const DATA_EVAL_USAGE = `Usage: friend data eval --input PATH --out FILE.jsonl --holdout-episodes X [options]

Writes evaluation items for \`friend eval\` from the held-out episodes only: each is a moment where a
main character answers another, with the scene's earlier lines (up to the bot's window), the line
answered and the true reply. Give the same --holdout-episodes and --holdout-seed as to
\`friend data sft\` / \`friend data chunks\`, so no item's scene has a line in the training files.

${TRANSCRIPT_INPUT_USAGE}
${HOLDOUT_USAGE}
  --count N        items to write (default ${DEFAULT_EVAL_COUNT})
  --seed N         seed for choosing them; the same seed gives the same file (default 1)
  --characters L   comma-separated main characters allowed in an exchange (default all six)
  --reply-as L     main characters whose lines may be the reply (default: --characters)
  --settings FILE  settings whose window bounds the scene lines kept (default config/friend.json)`;

export async function runDataEval(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...TRANSCRIPT_INPUT_OPTIONS,
    ...HOLDOUT_OPTIONS,
    count: { type: "string" },
    seed: { type: "string" },
    characters: { type: "string" },
    "reply-as": { type: "string" },
    settings: { type: "string" },
  });
  if (values.help) {
    io.out(DATA_EVAL_USAGE);
    return 0;
  }
  const input = requiredOption(values.input, "input");
  const out = requiredOption(values.out, "out");
  const spec = parseHoldoutOption(requiredOption(values["holdout-episodes"], "holdout-episodes"))!;
  const holdoutSeed = integerOption(values["holdout-seed"], "holdout-seed", 1, 0, 2 ** 32 - 1);
  const count = integerOption(values.count, "count", DEFAULT_EVAL_COUNT, 1, 1_000_000);
  const seed = integerOption(values.seed, "seed", 1, 0, 2 ** 32 - 1);
  const characters = characterListOption(values.characters, "characters") ?? DEFAULT_PAIR_FILTER.characters;
  const filter: PairFilter = { ...DEFAULT_PAIR_FILTER, characters, replyAs: characterListOption(values["reply-as"], "reply-as") ?? characters };
  const settings = readSettings(values.settings ? resolve(io.cwd, values.settings) : DEFAULT_SETTINGS_PATH);

  const transcript = readTranscriptFor(io, input, values.format);
  const split = splitHoldout(transcript.scenes, chooseHoldout(transcript.scenes, spec, holdoutSeed));
  io.out(`held out ${split.held.size} of ${episodesOf(transcript.scenes).length} episodes: ${[...split.held].join(", ")}`);
  // The bot's window holds maxTurns turns, the answered message among them.
  const items = evalItemsFrom(split.heldOut, filter, settings.window.maxTurns - 1);
  if (items.length === 0) throw new CommandError("the held-out episodes have no line where one main character answers another; hold out more episodes");
  const chosen = sampleInOrder(items, count, seed);
  writeJsonl(io, out, chosen);
  io.out(`items: ${items.length} found, ${chosen.length} chosen with seed ${seed}${chosen.length < count ? ` (fewer than the ${count} asked for)` : ""}`);
  io.out(`wrote ${out}`);
  return 0;
}

function readSettings(path: string): Settings {
  try {
    return loadSettings(path);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`cannot read the settings: ${err.problems.join("; ")}`);
    throw err;
  }
}
