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

/** No persistence: what FRIEND_DB_PATH=:memory: means, and what unit tests use. Bounded like the real one. */
export class MemoryStore implements ConversationStore {
  readonly #windows = new Map<string, Turn[]>();
  readonly #answered = new Set<string>();
  readonly #backends = new Map<string, BackendName>();

  constructor(
    private readonly maxTurnsPerChannel = 200,
    private readonly maxAnsweredIds = 10_000,
  ) {}

  loadWindow(channelId: string): Turn[] {
    return [...(this.#windows.get(channelId) ?? [])];
  }

  saveExchange(channelId: string, turns: readonly Turn[], answeredIds: readonly string[]): void {
    const window = [...(this.#windows.get(channelId) ?? []), ...turns];
    this.#windows.set(channelId, window.slice(-this.maxTurnsPerChannel));
    for (const id of answeredIds) this.#answered.add(id);
    // Sets iterate in insertion order: the oldest ids go first.
    for (const id of this.#answered) {
      if (this.#answered.size <= this.maxAnsweredIds) break;
      this.#answered.delete(id);
    }
  }

  clearWindow(channelId: string): void {
    this.#windows.delete(channelId);
  }

  isAnswered(messageId: string): boolean {
    return this.#answered.has(messageId);
  }

  getBackend(channelId: string): BackendName | undefined {
    return this.#backends.get(channelId);
  }

  setBackend(channelId: string, backend: BackendName): void {
    this.#backends.set(channelId, backend);
  }
}
