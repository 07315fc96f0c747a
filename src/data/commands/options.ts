import { UsageError } from "../../commandline/errors.ts";
import { FINETUNE_MODELS, isFinetuneModel, type FinetuneModel } from "../openai-models.ts";
import { MAIN_CHARACTERS, type MainCharacter } from "../../core/cast.ts";
import { mainCharacterNamed } from "../speakers.ts";

export function finetuneModelOption(value: string): FinetuneModel {
  if (!isFinetuneModel(value)) throw new UsageError(`--model must be ${Object.keys(FINETUNE_MODELS).join(" or ")}, not "${value}"`);
  return value;
}

/** `Chandler,JOEY, mnca` → {Chandler, Joey, Monica}; anything else is a UsageError. */
export function characterListOption(value: string | undefined, name: string): Set<MainCharacter> | undefined {
  if (value === undefined) return undefined;
  const characters = new Set<MainCharacter>();
  for (const spelling of value.split(",").map((s) => s.trim()).filter(Boolean)) {
    const character = mainCharacterNamed(spelling);
    if (!character) throw new UsageError(`--${name}: "${spelling}" is not a main character (${MAIN_CHARACTERS.join(", ")})`);
    characters.add(character);
  }
  if (characters.size === 0) throw new UsageError(`--${name} names no characters`);
  return characters;
}
