import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { Backends } from "./backends/registry.ts";
import { TERMINAL_CHANNEL_PREFIX } from "./chat/terminal.ts";
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
  /** Closes the gateway, lets in-flight replies finish briefly, then releases everything. */
  stop(): Promise<void>;
}

/** Wires config → store → backends → conversation → bot, and logs in. */
export async function startFriend(config: Config, logger: Logger, parts: EngineParts = {}): Promise<Friend> {
  const startedAt = Date.now();
  const engine = createEngine(config, logger, { ...parts, onEvent: (event) => (metrics.observe(event), parts.onEvent?.(event)) });
  const { store, backends, conversation } = engine;
  const metrics = new FriendMetrics(
    () => conversation.queueDepth,
    () => backends.created().find((b) => b.name === "local")?.describe().savedStates,
  );
  const bot = new FriendBot({
    config,
    conversation,
    logger,
    onInteraction: commandHandler({ config, conversation, backends, startedAt, version: VERSION }, logger),
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
    ops = config.http ? await startOpsServer({ ...config.http, healthy: () => bot.ready && store.healthy(), metrics, logger }) : undefined;
    await bot.start();
  } catch (err) {
    await bot.stop().catch(() => {});
    await ops?.close();
    await engine.close(0);
    throw err;
  }
  await catchUp(config, store, bot, conversation, logger);
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
async function catchUp(config: Config, store: SqliteStore, bot: FriendBot, conversation: Conversation, logger: Logger): Promise<void> {
  try {
    // Terminal conversations (`friend chat`) are not Discord's to answer.
    const unanswered = store.unanswered().filter((m) => !m.channelId.startsWith(TERMINAL_CHANNEL_PREFIX));
    if (unanswered.length === 0) return;
    const oldest = Date.now() - config.catchUpMaxAgeMs;
    const stale = unanswered.filter((m) => m.turn.at < oldest).map((m) => m.turn.messageId);
    if (stale.length > 0) {
      store.drop(stale);
      logger.info({ count: stale.length, messages: stale, maxAgeS: config.catchUpMaxAgeMs / 1000 }, "unanswered messages from before the restart are too old; dropped");
    }
    // Sinks first, then all of a channel's messages at once, so they are answered as one turn.
    const resumable = [];
    for (const message of unanswered.filter((m) => m.turn.at >= oldest)) {
      const sink = await bot.sinkFor(message.channelId, message.turn.messageId);
      if (sink) resumable.push({ message, sink });
      else {
        store.drop([message.turn.messageId]);
        logger.info({ msgId: message.turn.messageId, channel: message.channelId }, "an unanswered message from before the restart is gone; dropped");
      }
    }
    for (const { message, sink } of resumable) {
      logger.info({ msgId: message.turn.messageId, channel: message.channelId }, "answering a message left unanswered before the restart");
      conversation.resume(message, sink);
    }
  } catch (err) {
    logger.error({ err }, "catch-up after the restart failed; carrying on");
  }
}
