import { UsageError } from "../commandline/errors.ts";
import { sampleInOrder } from "./sft/sampling.ts";
import type { Scene } from "./transcript.ts";

/** `--holdout-episodes`: named episodes, or a fraction of them chosen by `--holdout-seed`. */
export type HoldoutSpec = { kind: "fraction"; fraction: number } | { kind: "episodes"; names: string[] };

export const HOLDOUT_USAGE = `  --holdout-episodes X  the held-out episodes: never in a training file, and the only ones
                        \`friend data eval\` draws from; a fraction (0.1) chosen by --holdout-seed, or
                        a comma-separated list of episode names or prefixes (S01E01,S02E03)
  --holdout-seed N      seed for choosing a fraction of episodes (default 1); give the same
                        --holdout-episodes and --holdout-seed to every data command of one split`;

export const HOLDOUT_OPTIONS = {
  "holdout-episodes": { type: "string" },
  "holdout-seed": { type: "string" },
} as const;

export function parseHoldoutOption(value: string | undefined): HoldoutSpec | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d*\.\d+$/.test(trimmed)) {
    const fraction = Number(trimmed);
    if (!(fraction > 0 && fraction < 1)) throw new UsageError(`--holdout-episodes as a fraction must be between 0 and 1, not "${value}"`);
    return { kind: "fraction", fraction };
  }
  const names = trimmed.split(",").map((n) => n.trim()).filter(Boolean);
  if (names.length === 0) throw new UsageError("--holdout-episodes names no episodes");
  return { kind: "episodes", names };
}

/** Episode names in the order they first appear. */
export function episodesOf(scenes: readonly Scene[]): string[] {
  return [...new Set(scenes.map((s) => s.episode))];
}

/** Whether `name` (as given on the command line) names `episode`: the whole name or a prefix ending at a word boundary, any case. */
function names(episode: string, name: string): boolean {
  const e = episode.toLowerCase();
  const n = name.toLowerCase();
  return e === n || (e.startsWith(n) && !/[\p{L}\p{N}]/u.test(e[n.length]!));
}

/** The held-out episodes. A fraction picks at least one and leaves at least one to train on. */
export function chooseHoldout(scenes: readonly Scene[], spec: HoldoutSpec, seed: number): Set<string> {
  const episodes = episodesOf(scenes);
  if (spec.kind === "episodes") {
    const held = new Set<string>();
    for (const name of spec.names) {
      const matched = episodes.filter((e) => names(e, name));
      if (matched.length === 0) {
        const examples = episodes.slice(0, 2).map((e) => JSON.stringify(e)).join(", ");
        throw new UsageError(`--holdout-episodes: no episode named "${name}" in the input (episode names look like ${examples})`);
      }
      for (const e of matched) held.add(e);
    }
    if (held.size === episodes.length) throw new UsageError("--holdout-episodes holds out every episode; nothing would be left to train on");
    return held;
  }
  if (episodes.length < 2) throw new UsageError("--holdout-episodes needs at least two episodes in the input");
  const count = Math.min(episodes.length - 1, Math.max(1, Math.round(spec.fraction * episodes.length)));
  return new Set(sampleInOrder(episodes, count, seed));
}

/** Folds case and spacing, so " Okay. " and "okay." count as one line. */
export function lineKey(text: string): string {
  return text.trim().replace(/\s+/g, " ").toLowerCase();
}

export interface HoldoutSplit {
  held: Set<string>;
  /** Scenes of the other episodes, cut wherever a line repeats one of the held-out episodes' lines. */
  train: Scene[];
  heldOut: Scene[];
  /** Training lines left out because the same line is said in a held-out episode. */
  droppedRepeats: number;
}

/**
 * Splits by episode, never by line. A line said word for word in a held-out episode too ("Hi.")
 * is left out of training, and the scene is cut there, so no training example joins the lines
 * around it and no held-out line appears in a training file at all.
 */
export function splitHoldout(scenes: readonly Scene[], held: ReadonlySet<string>): HoldoutSplit {
  const heldOut = scenes.filter((s) => held.has(s.episode));
  const heldLines = new Set(heldOut.flatMap((s) => s.lines.map((l) => lineKey(l.text))));
  const train: Scene[] = [];
  let droppedRepeats = 0;
  for (const scene of scenes) {
    if (held.has(scene.episode)) continue;
    let part: Scene = { episode: scene.episode, lines: [] };
    for (const line of scene.lines) {
      if (!heldLines.has(lineKey(line.text))) {
        part.lines.push(line);
        continue;
      }
      droppedRepeats++;
      if (part.lines.length) train.push(part);
      part = { episode: scene.episode, lines: [] };
    }
    if (part.lines.length) train.push(part);
  }
  return { held: new Set(held), train, heldOut, droppedRepeats };
}

/** Applies `--holdout-episodes` to a training command's scenes, reporting what was left out. */
export function trainingScenes(scenes: Scene[], value: string | undefined, seedValue: number, out: (line: string) => void): Scene[] {
  const spec = parseHoldoutOption(value);
  if (!spec) return scenes;
  const split = splitHoldout(scenes, chooseHoldout(scenes, spec, seedValue));
  out(`held out ${split.held.size} of ${episodesOf(scenes).length} episodes: ${[...split.held].join(", ")}`);
  if (split.droppedRepeats) out(`left out ${split.droppedRepeats} training lines also said in a held-out episode`);
  return split.train;
}
