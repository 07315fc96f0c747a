import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { Backends } from "./backends/registry.ts";
import { TERMINAL_CHANNEL_PREFIX } from "./core/channel.ts";
import type { Config } from "./config/env.ts";
import type { Conversation } from "./conversation/conversation.ts";
import { FriendBot } from "./discord/bot.ts";
import { commandHandler, registerCommands } from "./discord/commands/index.ts";
import { createEngine, type EngineParts } from "./engine.ts";
import { startOpsServer } from "./ops/http.ts";
import { FriendMetrics } from "./ops/metrics.ts";
import type { SqliteStore } from "./store/sqlite.ts";

export const VERSION: string = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;

/** A running Friend: what main.ts starts and what the end-to-end tests drive. */
export interface Friend {
  bot: FriendBot;
  conversation: Conversation;
  backends: Backends;
  store: SqliteStore;
  metrics: FriendMetrics;
  /** The health and metrics endpoint, when FRIEND_HTTP_PORT is set. */
  opsUrl?: string;
  /** Settles once catch-up has queued what was left unanswered before the restart, and new messages are taken. */
  caughtUp: Promise<void>;
  /** Closes the gateway, lets in-flight replies finish briefly, then releases everything. */
  stop(): Promise<void>;
}

/** Wires config → store → backends → conversation → bot, and logs in. */
export async function startFriend(config: Config, logger: Logger, parts: EngineParts = {}): Promise<Friend> {
  const startedAt = Date.now();
  const engine = createEngine(config, logger, { ...parts, onEvent: (event) => (metrics.observe(event), parts.onEvent?.(event)) });
  const { store, backends, conversation } = engine;
  try {
    store.claimOwnership(config.dbPath);
  } catch (err) {
    await engine.close(0);
    throw err;
  }
  const metrics = new FriendMetrics(
    () => conversation.queueDepth,
    () => backends.created().find((b) => b.name === "local")?.describe().savedStates,
  );
  const bot: FriendBot = new FriendBot({
    config,
    conversation,
    logger,
    webhookStore: store,
    onInteraction: commandHandler({ config, conversation, backends, startedAt, version: VERSION, characterPosting: (channelId): Promise<string | null> => bot.characterPosting(channelId), characterFallback: (channelId) => bot.characterFallback(channelId) }, logger),
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
  let ops: Awaited<ReturnType<typeof startOpsServer>> | undefined;
  try {
    // The endpoint comes up first so that a container that cannot reach Discord reports itself unhealthy.
    ops = config.http ? await startOpsServer({ ...config.http, healthy: () => bot.ready && store.healthy() && conversation.writesDurable(), metrics, logger }) : undefined;
    await bot.start();
  } catch (err) {
    await bot.stop().catch(() => {});
    await ops?.close();
    await engine.close(0);
    throw err;
  }
  // Catch-up is queued before new messages are taken, so each channel answers in the order things were said.
  const caughtUp = catchUp(config, bot, conversation, logger).finally(() => bot.openIntake());
  let stopping: Promise<void> | undefined;
  return {
    bot,
    conversation,
    backends,
    store,
    metrics,
    opsUrl: ops?.url,
    caughtUp,
    stop: () =>
      (stopping ??= (async () => {
        // Replies in flight are posted before the client goes: destroying it clears its token.
        await conversation.close(config.shutdownGraceMs);
        await bot.stop();
        await ops?.close();
        await engine.close(0);
      })()),
  };
}

/**
 * Answers, once, the messages accepted before a restart that never got a posted reply (a crash, or a
 * stop whose grace ran out), replying to the original message and completing any reply Friend had
 * begun. Messages older than FRIEND_CATCHUP_MAX_AGE_S are dropped with a log line.
 */
async function catchUp(config: Config, bot: FriendBot, conversation: Conversation, logger: Logger): Promise<void> {
  try {
    await conversation.catchUp({
      maxAgeMs: config.catchUpMaxAgeMs,
      // Terminal conversations (`friend chat`) are not Discord's to answer.
      only: (channelId) => !channelId.startsWith(TERMINAL_CHANNEL_PREFIX),
      sinkFor: (message) => bot.sinkFor(message.channelId, message.turn.messageId),
    });
  } catch (err) {
    logger.error({ err }, "catch-up after the restart failed; carrying on");
  }
}
