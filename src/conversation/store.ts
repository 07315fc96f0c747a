import type { BackendName } from "../backends/backend.ts";
import type { Turn } from "./turn.ts";

/**
 * Durable conversation state. The conversation writes a whole exchange (the user turns it answers
 * and Friend's reply) in one call *before* the reply is sent, so a crash mid-send loses at most
 * that one reply and never earlier history.
 */
export interface ConversationStore {
  loadWindow(channelId: string): Turn[];
  /** Appends turns and marks the Discord message ids among them as answered, atomically. */
  saveExchange(channelId: string, turns: readonly Turn[], answeredIds: readonly string[]): void;
  clearWindow(channelId: string): void;
  isAnswered(messageId: string): boolean;
  getBackend(channelId: string): BackendName | undefined;
  setBackend(channelId: string, backend: BackendName): void;
}
