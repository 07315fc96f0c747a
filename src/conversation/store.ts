import type { BackendName } from "../core/backend.ts";
import type { Turn } from "../core/turn.ts";

/** A user's message that Friend accepted and has not yet answered on Discord. */
export interface AcceptedMessage {
  channelId: string;
  /** Who sent it (for flood control after a restart); the sanitised name is in `turn.author`. */
  authorId: string;
  /** The user's turn; `turn.messageId` is the Discord message id. */
  turn: Turn & { messageId: string };
  /** The text was cut to the input bounds, and the reply says so (not stored). */
  trimmed?: boolean;
  /** The cast member it replies to, who answers it (stored: catch-up after a restart answers as them too). */
  character?: string;
  /** The server the channel belongs to (none in a DM), and a thread's parent channel: leaving either forgets it. */
  guildId?: string;
  parentId?: string;
}

/** Where a channel lives, as recorded when a message of it was accepted. */
export interface ChannelPlace {
  channelId: string;
  guildId: string;
  /** A thread's parent channel. */
  parentId?: string;
}

/** What forgetting a user removed from one channel. */
export interface ForgottenAuthor {
  /** The user's turns. */
  turns: number;
  /** Friend's replies to them. */
  replies: number;
  /** Their messages still waiting for an answer. */
  unanswered: number;
}

/**
 * Durable conversation state, written in the order a user would expect:
 * - a message is `accept`ed (durable, unanswered) before any work on it starts;
 * - once its reply is *posted*, `complete` moves it into the channel's turns with Friend's reply
 *   and marks it answered, atomically.
 *
 * So a crash or a stop mid-reply leaves the message unanswered, and catch-up answers it at the next
 * start; a message whose reply reached Discord is never answered twice.
 *
 * Every write may throw (a full disk, a locked or read-only file): callers log it and carry on.
 */
export interface ConversationStore {
  loadWindow(channelId: string): Turn[];
  /** Records an accepted message; false when it is already accepted or answered (a gateway replay). */
  accept(message: AcceptedMessage): boolean;
  /**
   * A reply to `answered` was posted: they join the channel's turns, followed by `reply` when it is
   * part of the story (not an error line), and are marked answered. One transaction.
   */
  complete(channelId: string, answered: readonly Turn[], reply: Turn | null): void;
  /** Accepted messages that have no posted reply yet, oldest first, for catch-up after a restart. */
  unanswered(): AcceptedMessage[];
  /** Gives up on accepted messages (too old to answer, or their channel was reset): marked answered, never answered. */
  drop(channelId: string, messageIds: readonly string[]): void;
  /** Forgets a channel's turns and its unanswered messages (which are dropped). */
  clearChannel(channelId: string): void;
  /**
   * The user deleted these messages: their turns and unanswered rows go. Their ids stay known (no
   * text), so a gateway replay of one is never answered. Returns how many rows held them.
   */
  forgetMessages(channelId: string, messageIds: readonly string[]): number;
  /** The user edited a message: its unanswered row or its turn takes the new text. Returns how many rows held it. */
  reviseMessage(channelId: string, messageId: string, text: string, tokens: number): number;
  /** Channels holding anything a user said, or Friend's replies to them. */
  channelsOf(authorId: string): string[];
  /** Forgets what a user said in a channel and Friend's replies to them (/forget). */
  forgetAuthor(channelId: string, authorId: string): ForgottenAuthor;
  /** Channels holding turns or messages from before `before` (Unix ms), for retention. */
  channelsBefore(before: number): string[];
  /** Forgets a channel's turns, unanswered messages and answered ids from before `before`; returns how many turns went. */
  expire(channelId: string, before: number): number;
  /** Channels recorded under a server, or threads under a channel. */
  channelsUnder(id: string): string[];
  /** Every channel whose server is recorded. */
  places(): ChannelPlace[];
  /** Forgets everything of a channel: turns, unanswered and answered messages, backend choice, place. */
  forgetChannel(channelId: string): void;
  /** True once a message was accepted (answered or not): a gateway replay of it is not new. */
  isKnown(messageId: string): boolean;
  getBackend(channelId: string): BackendName | undefined;
  setBackend(channelId: string, backend: BackendName): void;
  /** The cast member's name the channel chose with /persona; kept through /reset. */
  getPersona(channelId: string): string | undefined;
  setPersona(channelId: string, name: string): void;
  /** How many follow-on lines a scene keeps in the channel (/scene); 0 when scenes are off. */
  getScene(channelId: string): number;
  setScene(channelId: string, lines: number): void;
}
