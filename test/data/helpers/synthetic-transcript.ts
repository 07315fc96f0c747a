import { seededRandom } from "../../../src/data/sft/sampling.ts";

const MAIN_LABELS = [
  ["Monica", "MNCA"],
  ["Rachel", "RACH"],
  ["Phoebe", "PHOE"],
  ["Joey", "Joey (to Chandler)"],
  ["Chandler", "CHAN"],
  ["Ross", "Ross (sitting down)"],
] as const;
const GUESTS = ["Gunther", "Mr. Treeger", "Janice", "Mrs. Geller", "The Waitress"];
const WORDS = (
  "okay so I just think we should talk about the couch you know what I mean could this be any " +
  "more awkward oh my god we were on a break pivot hey how you doin the coffee is cold again " +
  "did anyone see my sandwich she is your lobster it is not that big a deal I am fine totally fine"
).split(" ");
const PLACES = ["Central Perk", "Monica and Rachel's", "Chandler and Joey's", "Ross's apartment", "the hallway"];

export interface SyntheticOptions {
  /** Script lines to produce (dialogue, headings, directions); physical lines are fewer with run-ons. */
  lines: number;
  seed?: number;
  /** Every Nth episode is flattened into one run-on line, as some Kaggle episodes are. */
  runOnEvery?: number;
}

/**
 * A Kaggle-format transcript of made-up Friends-style lines, with the real file's quirks:
 * numbered upper-case titles, credits, scene headings, directions, abbreviations, run-on episodes.
 */
export function syntheticKaggleTranscript({ lines, seed = 1, runOnEvery = 20 }: SyntheticOptions): string {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const sentence = () => {
    const words = Array.from({ length: 3 + Math.floor(random() * 20) }, () => pick(WORDS));
    return `${words.join(" ")}${pick([".", "!", "?", "..."])}`;
  };

  const out: string[] = [];
  let produced = 0;
  for (let episode = 1; produced < lines; episode++) {
    out.push(`${episode} THE ONE WITH THE SYNTHETIC ${episode % 2 ? "SANDWICH" : "COUCH"} NUMBER ${episode}`);
    out.push("Written by: A. Generator");
    const runOn = episode % runOnEvery === 0;
    const episodeItems: string[] = [];
    const scenes = 6 + Math.floor(random() * 5);
    for (let scene = 0; scene < scenes && produced < lines; scene++) {
      episodeItems.push(`[Scene: ${pick(PLACES)}, scene ${scene + 1}.]`);
      produced++;
      const sceneLines = 15 + Math.floor(random() * 30);
      for (let i = 0; i < sceneLines && produced < lines; i++, produced++) {
        const roll = random();
        if (roll < 0.08) episodeItems.push(`(${sentence()})`);
        else if (roll < 0.18) {
          const guest = pick(GUESTS);
          episodeItems.push(`${runOn ? guest.toUpperCase() : guest}: ${sentence()}`);
        }
        else {
          const [name, alias] = pick(MAIN_LABELS);
          const label = runOn ? name.toUpperCase() : random() < 0.15 ? alias : name;
          const direction = random() < 0.1 ? ` (${pick(WORDS)})` : "";
          episodeItems.push(`${label}: ${sentence()}${direction} ${sentence()}`);
        }
      }
    }
    if (runOn) out.push(episodeItems.join("  "));
    else out.push(...episodeItems);
    out.push("End", "");
  }
  return out.join("\n");
}
