import type { CastMember } from "./cast.ts";

/** Who Friend is: its name, its system prompt and its fixed lines (config/friend.json's `persona`). */
export interface Persona {
  /** One capitalised word, e.g. "Friend": the label it speaks under in prompts. */
  name: string;
  /** `{user}` is replaced by the name of whoever Friend is answering. */
  systemPrompt: string;
  /** The fixed partner name the original experiment trained with; used by the dataset builder. */
  trainingPartner: string;
  /** Said when the model's reply is empty after cleaning, twice. */
  fallbackReply: string;
  /** Said when the backend fails or times out, also in place of a reply cut off part-way. */
  errorReply: string;
  /** Sent once to a user who floods; after it they are ignored until their rate drops. */
  slowDownReply: string;
}

/**
 * The persona speaking as one cast member: the base persona's prompt with the character's name in
 * place of its own, followed by the character's description; the fixed lines stay the base's.
 * The base persona's own cast entry gives the base persona unchanged.
 */
export function personaAs(base: Persona, member: CastMember): Persona {
  if (member.name === base.name) return base;
  const prompt = base.systemPrompt.replaceAll(base.name, member.name);
  return { ...base, name: member.name, systemPrompt: member.description ? `${prompt} ${member.description}` : prompt };
}
