import type { Logger } from "pino";
import { BackendError, type Backend } from "./backends/backend.ts";
import { Backends, type LocalBackendFactory } from "./backends/registry.ts";
import type { Config } from "./config/env.ts";
import { Conversation, type ConversationEvent } from "./conversation/conversation.ts";
import { MemoryStore, type ConversationStore } from "./conversation/store.ts";
import { FriendBot } from "./discord/bot.ts";

export interface FriendParts {
  /** Defaults to the store at config.dbPath. */
  store?: ConversationStore;
  /** Defaults to the llama.cpp backend built from config.local. */
  makeLocal?: LocalBackendFactory;
  onEvent?: (event: ConversationEvent) => void;
}

/** A running Friend: what main.ts starts and what the end-to-end tests drive. */
export interface Friend {
  bot: FriendBot;
  conversation: Conversation;
  backends: Backends;
  store: ConversationStore;
  /** Closes the gateway, lets in-flight replies finish briefly, then releases everything. */
  stop(): Promise<void>;
}

function unavailableLocal(): Backend {
  return {
    name: "local",
    describe: () => ({ backend: "local", model: "(not built)", loaded: false }),
    async *generate() {
      throw new BackendError("load", "The local backend is not part of this build.");
    },
    close: async () => {},
  };
}

/** Wires config → store → backends → conversation → bot, and logs in. */
export async function startFriend(config: Config, logger: Logger, parts: FriendParts = {}): Promise<Friend> {
  const store = parts.store ?? new MemoryStore();
  const backends = new Backends(config, logger, parts.makeLocal ?? unavailableLocal);
  const conversation = new Conversation({
    settings: config.settings,
    store,
    backendFor: (channelId) => backends.get(store.getBackend(channelId) ?? config.defaultBackend),
    backends: () => backends.created(),
    logger,
    onEvent: parts.onEvent,
  });
  const bot = new FriendBot({ config, conversation, logger });
  if (config.defaultBackend === "local") {
    // The default backend loads at start; a failure is logged and retried on the first message.
    void backends.unavailableReason("local").then((reason) => reason && logger.error({ reason }, "local model failed to load"));
  }
  await bot.start();
  let stopping: Promise<void> | undefined;
  return {
    bot,
    conversation,
    backends,
    store,
    stop: () =>
      (stopping ??= (async () => {
        await Promise.all([bot.stop(), conversation.close()]);
        await backends.close();
      })()),
  };
}
