import { MAIN_CHARACTER_ALIASES, MAIN_CHARACTERS, type MainCharacter } from "../core/cast.ts";

const EVERYONE_LABELS = new Set(["all", "everyone", "everybody", "all six", "the gang"]);

/** Splits `PHOE/MNCA`, `MONICA and PHOEBE`, `Ross & Rachel`, `Joey, Chandler and Ross`. */
const SPEAKER_SEPARATOR = /\s*(?:\/|&|,|\band\b)\s*/i;

export function isMainCharacter(name: string): name is MainCharacter {
  return (MAIN_CHARACTERS as readonly string[]).includes(name);
}

/** The canonical main character for one spelling ("MNCA", "Joey Tribbiani"), if it is one. */
export function mainCharacterNamed(spelling: string): MainCharacter | undefined {
  return MAIN_CHARACTER_ALIASES.get(spelling.trim().replace(/\s+/g, " ").toLowerCase());
}

/**
 * The canonical speakers behind a raw label, or undefined when nothing is left of it.
 * Directions in parentheses go (`Joey (to Rachel)` → Joey, `All (except Rachel)` → All);
 * a main character's name then a lower-case word is a direction merged into the label
 * (`Rachel turns to Ross` → Rachel); other names keep their words, ALL-CAPS ones title-cased.
 */
export function normaliseSpeakerLabel(label: string): string[] | undefined {
  const bare = label
    .replace(/\([^)]*\)?|\[[^\]]*\]?/g, " ")
    .replace(/:+\s*$/, "")
    .replace(/\s+/g, " ")
    .trim();
  if (!bare) return undefined;
  if (EVERYONE_LABELS.has(bare.toLowerCase())) return ["All"];
  const mergedDirection = mainCharacterWithDirection(bare);
  if (mergedDirection) return [mergedDirection];

  const speakers: string[] = [];
  for (const part of bare.split(SPEAKER_SEPARATOR)) {
    const name = canonicalName(part);
    if (name && !speakers.includes(name)) speakers.push(name);
  }
  return speakers.length ? speakers : undefined;
}

/** `Rachel turns to Ross` → Rachel: a main character's name, then a lower-case word that is not "and". */
function mainCharacterWithDirection(label: string): MainCharacter | undefined {
  const [first = "", second = ""] = label.split(" ");
  if (!/^[a-z]/.test(second) || second === "and") return undefined;
  return mainCharacterNamed(first);
}

function canonicalName(part: string): string | undefined {
  if (!part) return undefined;

  const main = mainCharacterNamed(part);
  if (main) return main;
  if (EVERYONE_LABELS.has(part.toLowerCase())) return "All";
  return part === part.toUpperCase() ? titleCase(part) : part;
}

/** `MR. TREEGER` → `Mr. Treeger`, `RACHEL'S DATE` → `Rachel's Date`. */
function titleCase(text: string): string {
  return text.toLowerCase().replace(/(^|[\s.\-])([a-z])/g, (_, before: string, letter: string) => before + letter.toUpperCase());
}

/** The one main character who speaks a line, or undefined for guests and group lines. */
export function soleMainSpeaker(speakers: readonly string[]): MainCharacter | undefined {
  const only = speakers.length === 1 ? speakers[0] : undefined;
  return only !== undefined && isMainCharacter(only) ? only : undefined;
}
