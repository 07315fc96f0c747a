/** The six main characters, the only speakers used for training pairs and LoRA runs. */
export const MAIN_CHARACTERS = ["Monica", "Rachel", "Phoebe", "Joey", "Chandler", "Ross"] as const;
export type MainCharacter = (typeof MAIN_CHARACTERS)[number];
