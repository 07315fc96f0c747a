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
