import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { LocalBackend } from "./backends/local.ts";
import { Backends, type LocalBackendFactory } from "./backends/registry.ts";
import type { Config } from "./config/env.ts";
import { Conversation, type ConversationEvent } from "./conversation/conversation.ts";
import { FriendBot } from "./discord/bot.ts";
import { commandHandler, registerCommands } from "./discord/commands/index.ts";
import { startOpsServer } from "./ops/http.ts";
import { FriendMetrics } from "./ops/metrics.ts";
import { SqliteStore } from "./store/sqlite.ts";

export const VERSION: string = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;

export interface FriendParts {
  /** Move an unreadable database aside instead of refusing to start (the --move-corrupt-db flag). */
  moveCorruptDb?: boolean;
  /** Replaces the llama.cpp backend built from config.local (for tests of the routing alone). */
  makeLocal?: LocalBackendFactory;
  onEvent?: (event: ConversationEvent) => void;
}

/** A running Friend: what main.ts starts and what the end-to-end tests drive. */
export interface Friend {
  bot: FriendBot;
  conversation: Conversation;
  backends: Backends;
  store: SqliteStore;
  metrics: FriendMetrics;
  /** The health and metrics endpoint, when FRIEND_HTTP_PORT is set. */
  opsUrl?: string;
  /** Closes the gateway, lets in-flight replies finish briefly, then releases everything. */
  stop(): Promise<void>;
}

/** Wires config → store → backends → conversation → bot, and logs in. */
export async function startFriend(config: Config, logger: Logger, parts: FriendParts = {}): Promise<Friend> {
  const startedAt = Date.now();
  const store = new SqliteStore({ path: config.dbPath, moveCorruptAside: parts.moveCorruptDb });
  const metrics = new FriendMetrics();
  const backends = new Backends(config, logger, parts.makeLocal ?? (() => new LocalBackend({ ...config.local, logger })));
  const conversation = new Conversation({
    settings: config.settings,
    store,
    backendFor: (channelId) => backends.get(store.getBackend(channelId) ?? config.defaultBackend),
    backends: () => backends.created(),
    userMessagesPerMinute: config.userMessagesPerMinute,
    logger,
    onEvent: (event) => {
      metrics.observe(event);
      parts.onEvent?.(event);
    },
  });
  const bot = new FriendBot({
    config,
    conversation,
    logger,
    onInteraction: commandHandler({ config, conversation, backends, store, startedAt, version: VERSION }, logger),
    onReady: async (client) => {
      try {
        const count = await registerCommands(client.rest, client.application.id, config.discord.guildId);
        logger.info({ count, guild: config.discord.guildId ?? "global" }, "slash commands registered");
      } catch (err) {
        logger.error({ err }, "could not register slash commands; run `npm run register` later");
      }
    },
  });
  if (config.defaultBackend === "local") {
    // The default backend loads at start; the backend logs a failure, and retries on the first message.
    void backends.unavailableReason("local");
  }
  // The endpoint comes up first so that a container that cannot reach Discord reports itself unhealthy.
  const ops = config.http ? await startOpsServer({ ...config.http, healthy: () => bot.ready && store.healthy(), metrics, logger }) : undefined;
  try {
    await bot.start();
  } catch (err) {
    await bot.stop().catch(() => {});
    await ops?.close();
    store.close();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    bot,
    conversation,
    backends,
    store,
    metrics,
    opsUrl: ops?.url,
    stop: () =>
      (stopping ??= (async () => {
        await Promise.all([bot.stop(), conversation.close()]);
        await Promise.all([backends.close(), ops?.close()]);
        store.close();
      })()),
  };
}
