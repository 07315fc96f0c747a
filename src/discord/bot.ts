import { Client, Events, GatewayIntentBits, Options, Partials, type Guild, type Interaction, type Message, type PartialMessage } from "discord.js";
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
      // Deletes and edits of messages no longer in the cache arrive only as partial messages.
      partials: [Partials.Channel, Partials.Message],
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

  /** Why characters post as Friend with the name in bold in a channel, as last found (for /status); null when they do not, or nobody has tried. */
  characterFallback(channelId: string): string | null {
    const channel = this.client.channels.cache.get(channelId);
    const reason = channel ? this.webhooks.refusal(channel) : undefined;
    return reason ? FALLBACK_REASONS[reason] : null;
  }

  get ready(): boolean {
    return this.#ready && this.client.isReady();
  }

  async start(): Promise<void> {
    const { client, options } = this;
    const log = options.logger;
    client.on(Events.MessageCreate, (message) => this.#onMessage(message));
    client.on(Events.MessageDelete, (message) => this.#guarded("a deleted message", () => this.#onDeleted(message.channelId, [message.id])));
    client.on(Events.MessageBulkDelete, (messages, channel) => this.#guarded("deleted messages", () => this.#onDeleted(channel.id, [...messages.keys()])));
    client.on(Events.MessageUpdate, (_old, message) => this.#guarded("an edited message", () => this.#onEdited(message)));
    client.on(Events.ChannelDelete, (channel) =>
      this.#guarded("a deleted channel", () => options.conversation.leaveChannel(channel.id, "threads" in channel ? [...channel.threads.cache.keys()] : [])),
    );
    client.on(Events.ThreadDelete, (thread) => this.#guarded("a deleted thread", () => options.conversation.leaveChannel(thread.id)));
    client.on(Events.GuildDelete, (guild) => this.#guarded("a server Friend left", () => this.#onGuildGone(guild)));
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
    this.#guarded("departures while offline", () => this.#forgetDepartedWhileOffline(readyClient));
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

  /** Deleted on Discord: forgotten by Friend, and a reply in flight to it stops (see ChannelSession.withdraw). */
  #onDeleted(channelId: string, messageIds: readonly string[]): void {
    if (this.#early) {
      const ids = new Set(messageIds);
      this.#early = this.#early.filter((m) => !ids.has(m.id));
    }
    const held = this.options.conversation.withdraw(channelId, messageIds);
    if (held > 0) this.options.logger.info({ channel: channelId, messages: messageIds.length, held }, "messages deleted on Discord; forgotten");
  }

  /**
   * Edited on Discord: still for Friend, its new text replaces the old (see ChannelSession.revise);
   * edited so that it no longer is (the mention removed), it is forgotten like a deleted message.
   */
  #onEdited(message: Message | PartialMessage): void {
    const botUserId = this.client.user?.id;
    if (message.partial || !botUserId || message.author.id === botUserId) return;
    const decision = intake(message, { botUserId, ...this.options.config.discord });
    const { conversation, logger } = this.options;
    if (decision.answer) {
      if (conversation.revise(message.channelId, message.id, decision.message.text)) logger.info({ msgId: message.id, channel: message.channelId }, "message edited on Discord; new text taken");
    } else if (decision.reason !== "bot" && decision.reason !== "system") {
      this.#onDeleted(message.channelId, [message.id]);
    }
  }

  /** Friend was removed from a server, or it was deleted (not a passing outage): all of it is forgotten. */
  #onGuildGone(guild: Guild): void {
    this.options.conversation.leaveGuild(guild.id, [...guild.channels.cache.keys()]);
    this.options.logger.info({ guild: guild.id }, "left a server; forgot its channels");
  }

  /**
   * Channels deleted and servers left while Friend was offline (Discord does not replay those
   * events): a recorded channel whose server is no longer Friend's, or that is missing from its
   * available server, is forgotten. A thread is judged by its parent (archived threads are not listed).
   */
  #forgetDepartedWhileOffline(client: Client<true>): void {
    const left = this.options.conversation.leaveWhere((place) => {
      const guild = client.guilds.cache.get(place.guildId);
      if (!guild) return true;
      return guild.available && !guild.channels.cache.has(place.parentId ?? place.channelId);
    });
    if (left.length > 0) this.options.logger.info({ channels: left }, "channels deleted or servers left while offline; forgotten");
  }

  /** A Discord event must never take Friend down. */
  #guarded(what: string, handle: () => void): void {
    try {
      handle();
    } catch (err) {
      this.options.logger.error({ err }, `could not handle ${what}`);
    }
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
