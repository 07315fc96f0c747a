/** One line of a channel's conversation, as Friend remembers it. */
export interface Turn {
  /** Display name of the speaker, already sanitised for prompts (see `speakerName`). */
  author: string;
  /** What was said; for Friend's own turns this is the cleaned reply that was sent. */
  text: string;
  /** True for Friend's own replies. */
  fromFriend: boolean;
  /** Unix milliseconds. */
  at: number;
  /** The Discord message id, when there is one. */
  messageId?: string;
  /** Who said it (a Discord user id), for a user's turn; unknown for turns stored before it was kept. */
  authorId?: string;
  /** For Friend's replies: the ids of the users it answered (several when messages were coalesced). */
  answered?: readonly string[];
  /** The text's length in cl100k tokens, counted once when the turn is made and stored with it. */
  tokens?: number;
}
