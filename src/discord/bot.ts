import { Client, Events, GatewayIntentBits, Options, Partials, type Interaction, type Message } from "discord.js";
import type { Logger } from "pino";
import type { Config } from "../config/env.ts";
import { errorCode, StartupError } from "../config/errors.ts";
import type { Conversation } from "../conversation/conversation.ts";
import type { WebhookStore } from "../core/webhook.ts";
import { intake } from "./intake.ts";
import { DiscordReply, type PosterFor } from "./send.ts";
import { CharacterPoster, CharacterWebhooks, FALLBACK_REASONS } from "./webhooks.ts";

/**
 * Messages discord.js keeps per channel. Friend holds the messages it replies to and edits itself,
 * so the cache only has to serve the odd lookup; discord.js's default of 200 per channel grew
 * memory for hours in the soak run (100 channels × 200 messages).
 */
const CACHED_MESSAGES_PER_CHANNEL = 20;
/** How far after a message catch-up looks for a reply Friend had begun before a crash. */
const CATCH_UP_SCAN = 50;
/** Messages held while catch-up runs at start-up; past this the oldest are not answered. */
const EARLY_MESSAGES = 1000;

export interface BotOptions {
  config: Config;
  conversation: Conversation;
  logger: Logger;
  /** Handles slash commands; the bot only routes them. */
  onInteraction?: (interaction: Interaction) => Promise<void>;
  /** Called once the gateway is ready, e.g. to register commands. */
  onReady?: (client: Client<true>) => Promise<void>;
  /** Where each channel's webhook for posting as a character is kept. */
  webhookStore: WebhookStore;
}

/** The discord.js client wired to Friend: messages in, replies out. */
export class FriendBot {
  readonly client: Client;
  /** The webhooks that post as characters other than Friend itself. */
  readonly webhooks: CharacterWebhooks;
  readonly #posterFor: PosterFor;
  #ready = false;
  /** Messages that arrived before intake opened (catch-up still running), in arrival order; null once open. */
  #early: Message[] | null = [];

  constructor(private readonly options: BotOptions) {
    this.client = new Client({
      intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent, GatewayIntentBits.DirectMessages],
      // Real Discord sends no CHANNEL_CREATE before a DM; without this partial DMs never arrive.
      partials: [Partials.Channel],
      rest: { api: options.config.discord.apiUrl },
      // A second line of defence: every message Friend sends also names its mentions explicitly.
      allowedMentions: { parse: [], repliedUser: false },
      makeCache: Options.cacheWithLimits({ ...Options.DefaultMakeCacheSettings, MessageManager: CACHED_MESSAGES_PER_CHANNEL }),
    });
    this.webhooks = new CharacterWebhooks(this.client.rest, options.webhookStore, () => this.client.application?.id, options.logger);
    const base = options.config.settings.persona.name;
    // Friend itself posts as the bot, unless catch-up is finishing a reply begun through the webhook.
    this.#posterFor = (character, trigger, begun) =>
      character.name === base && begun === 0
        ? null
        : new CharacterPoster(
            this.webhooks,
            character,
            trigger,
            (reason) => options.logger.debug({ channel: trigger.channelId, persona: character.name, reason }, "posting as Friend with the character's name in bold"),
            begun,
          );
  }

  /**
   * Why Friend cannot post under a character's own name in a channel (told to whoever chose the
   * persona), or null when it can. Creates the channel's webhook if it has none yet.
   */
  async characterPosting(channelId: string): Promise<string | null> {
    const channel = await this.client.channels.fetch(channelId).catch(() => null);
    if (!channel) return null;
    const target = await this.webhooks.targetFor(channel);
    return typeof target === "string" ? FALLBACK_REASONS[target] : null;
  }

  get ready(): boolean {
    return this.#ready && this.client.isReady();
  }

  async start(): Promise<void> {
    const { client, options } = this;
    const log = options.logger;
    client.on(Events.MessageCreate, (message) => this.#onMessage(message));
    client.on(Events.InteractionCreate, (interaction) => {
      options.onInteraction?.(interaction).catch((err) => log.error({ err, command: interaction.isCommand() ? interaction.commandName : undefined }, "command failed"));
    });
    client.on(Events.ShardDisconnect, (event, shard) => log.warn({ shard, code: event.code }, "gateway disconnected"));
    client.on(Events.ShardReconnecting, (shard) => log.info({ shard }, "gateway reconnecting"));
    client.on(Events.ShardResume, (shard, replayed) => log.info({ shard, replayed }, "gateway resumed"));
    client.on(Events.Warn, (message) => log.warn({ discord: message }, "discord.js warning"));
    client.on(Events.Error, (err) => log.error({ err }, "discord.js error"));
    client.rest.on("rateLimited", (info) => log.warn({ route: info.route, retryAfterMs: info.retryAfter, global: info.global }, "Discord rate limit; waiting"));

    const ready = new Promise<Client<true>>((resolve) => client.once(Events.ClientReady, resolve));
    try {
      await client.login(options.config.discord.token);
    } catch (err) {
      throw loginError(err, options.config.discord.apiUrl);
    }
    const readyClient = await ready;
    log.info({ user: readyClient.user.tag, guilds: readyClient.guilds.cache.size }, "connected to Discord");
    await options.onReady?.(readyClient);
    this.#ready = true;
  }

  /** Starts taking new messages, first those that arrived while catch-up ran. */
  openIntake(): void {
    const early = this.#early ?? [];
    this.#early = null;
    for (const message of early) this.#onMessage(message);
  }

  async stop(): Promise<void> {
    this.#ready = false;
    await this.client.destroy();
  }

  /**
   * Where the answer to a message accepted before a restart goes: a reply to it that edits the one
   * Friend had begun (so a half-posted reply is completed, never doubled). Null when the channel or
   * the message is gone.
   */
  async sinkFor(channelId: string, messageId: string): Promise<DiscordReply | null> {
    const channel = await this.client.channels.fetch(channelId).catch(() => null);
    if (!channel?.isTextBased()) return null;
    const trigger = await channel.messages.fetch(messageId).catch(() => null);
    if (!trigger) return null;
    const later = await channel.messages.fetch({ after: messageId, limit: CATCH_UP_SCAN }).catch(() => null);
    const botId = this.client.user?.id;
    // Every part of a reply replies to the trigger, so a reply cut off between its parts is found whole.
    const begun = [...(later?.values() ?? [])].filter((m) => m.author.id === botId && m.reference?.messageId === messageId).sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
    return new DiscordReply(trigger, begun, this.#posterFor, this.webhooks.begun(messageId));
  }

  #onMessage(message: Message): void {
    const { options } = this;
    if (this.#early) {
      if (this.#early.push(message) > EARLY_MESSAGES) this.#early.shift();
      return;
    }
    try {
      const botUserId = this.client.user?.id;
      if (!botUserId) return;
      const decision = intake(message, { botUserId, ...options.config.discord, ownWebhookId: (channelId) => this.webhooks.ownWebhookId(channelId) });
      if (!decision.answer) {
        options.logger.debug({ msgId: message.id, channel: message.channelId, reason: decision.reason }, "message ignored");
        return;
      }
      const result = options.conversation.submit(decision.message, new DiscordReply(message, [], this.#posterFor));
      options.logger.debug({ msgId: message.id, channel: message.channelId, result }, "message received");
    } catch (err) {
      // A user's message must never take Friend down.
      options.logger.error({ err, msgId: message.id }, "could not handle a message");
    }
  }
}

/** Turns a failed login into one line naming the variable to fix; anything else is rethrown as it is. */
function loginError(err: unknown, apiUrl: string): unknown {
  const code = errorCode(err);
  const status = (err as { status?: unknown }).status;
  if (code === "TokenInvalid" || status === 401) {
    return new StartupError("DISCORD_TOKEN: Discord refused the token. Reset it in the developer portal (Bot → Reset Token) and put the new one in .env.", { cause: err });
  }
  if (code === "DisallowedIntents") {
    return new StartupError("DISCORD_TOKEN: the bot may not use the Message Content intent. Turn on the Message Content Intent under Bot in the developer portal.", { cause: err });
  }
  if (code && /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNRESET|UND_ERR_)/.test(code)) {
    return new StartupError(`DISCORD_API_URL=${apiUrl}: cannot reach Discord (${code}). Check the address, or unset DISCORD_API_URL to use https://discord.com/api.`, { cause: err });
  }
  return err;
}
