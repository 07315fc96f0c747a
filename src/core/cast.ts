/** The six main characters, the only speakers used for training pairs and LoRA runs. */
export const MAIN_CHARACTERS = ["Monica", "Rachel", "Phoebe", "Joey", "Chandler", "Ross"] as const;
export type MainCharacter = (typeof MAIN_CHARACTERS)[number];

/** Lower-cased spellings seen in transcripts, mapped to the canonical name. */
export const MAIN_CHARACTER_ALIASES: ReadonlyMap<string, MainCharacter> = new Map<string, MainCharacter>([
  ...MAIN_CHARACTERS.map((name) => [name.toLowerCase(), name] as const),
  // Abbreviations from the Kaggle file's early transcribers.
  ["mnca", "Monica"],
  ["rach", "Rachel"],
  ["phoe", "Phoebe"],
  ["pheebs", "Phoebe"],
  ["chan", "Chandler"],
  ["chand", "Chandler"],
  // Full names, as in the emorynlp speakers lists.
  ["monica geller", "Monica"],
  ["monica geller-bing", "Monica"],
  ["monica bing", "Monica"],
  ["rachel green", "Rachel"],
  ["phoebe buffay", "Phoebe"],
  ["joey tribbiani", "Joey"],
  ["joseph tribbiani", "Joey"],
  ["chandler bing", "Chandler"],
  ["ross geller", "Ross"],
]);

/** Every spelling that names one main character ("mnca", "ross geller", …), lower-cased. */
export function mainCharacterSpellings(): string[] {
  return [...MAIN_CHARACTER_ALIASES.keys()];
}

/**
 * One character Friend can speak as (config/friend.json's `cast`): the name it speaks under in
 * prompts and on Discord, other spellings of it, its avatar and a line about who it is.
 */
export interface CastMember {
  /** One capitalised word, e.g. "Joey": the script label, the webhook's username and the OpenAI `name`. */
  name: string;
  /** Other spellings a model may label its lines with ("Joey Tribbiani"). */
  aliases: string[];
  /** The webhook avatar; none when empty. */
  avatarUrl?: string;
  /** Who the character is, added to the system prompt when they speak. */
  description: string;
}

/**
 * Every spelling that names `member`: the name, the configured aliases, and for a main character
 * the spellings seen in transcripts (so one list of those serves the dataset and the cleaner).
 */
export function castSpellings(member: CastMember): string[] {
  const main = [...MAIN_CHARACTER_ALIASES].filter(([, name]) => name === member.name).map(([spelling]) => spelling);
  const all = [member.name, ...member.aliases, ...main];
  return all.filter((s, i) => all.findIndex((t) => t.toLowerCase() === s.toLowerCase()) === i);
}

/** The cast member `name` spells (any case, any alias), or undefined. */
export function findCastMember(cast: readonly CastMember[], name: string): CastMember | undefined {
  const wanted = name.trim().replace(/\s+/g, " ").toLowerCase();
  if (!wanted) return undefined;
  return cast.find((m) => castSpellings(m).some((s) => s.toLowerCase() === wanted));
}
