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
