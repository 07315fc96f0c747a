import { DiscordAPIError, Routes, type Channel, type Message, type REST } from "discord.js";
import type { Logger } from "pino";
import type { CastMember } from "../core/cast.ts";
import type { WebhookCredentials, WebhookStore } from "../core/webhook.ts";
import { BotPoster, retryClosedSocket, type PartPoster, type PostedPart } from "./send.ts";

/** The name Friend's webhook is created with; every post sets its own username. */
const WEBHOOK_NAME = "Friend cast";
/** Webhook posts ping nobody, as Friend's own messages. */
const NO_MENTIONS = { parse: [] as string[] };
/** After Discord refused a webhook in a channel (no permission, the limit), how long before trying again. */
const RETRY_REFUSED_MS = 10 * 60 * 1000;

/** Why Friend posts a character as itself, with the name in bold. */
export type FallbackReason = "dm" | "permission" | "limit" | "error";

/** What the person who chose the persona is told when Friend cannot post under the character's name. */
export const FALLBACK_REASONS: Record<FallbackReason, string> = {
  dm: "Discord has no webhooks in direct messages",
  permission: "I don't have the Manage Webhooks permission in this channel",
  limit: "this channel already has as many webhooks as Discord allows (15)",
  error: "Discord would not let me create a webhook here just now",
};

/** Where a character's posts go: a channel's webhook (a thread's messages go through its parent's, with thread_id). */
interface WebhookTarget {
  webhook: WebhookCredentials;
  /** The channel that owns the webhook (a thread's parent). */
  channelId: string;
  threadId?: string;
}

/** Discord's error code on a failed REST call, if it is one. */
function discordCode(err: unknown): number | undefined {
  return err instanceof DiscordAPIError && typeof err.code === "number" ? err.code : undefined;
}

/**
 * A webhook call that failed, without the URL: discord.js errors carry the request URL, and a
 * webhook's URL holds its token. Only this ever reaches a log.
 */
export class WebhookError extends Error {
  readonly code: number | undefined;
  readonly status: number | undefined;
  constructor(what: string, err: unknown) {
    const code = discordCode(err);
    const status = err instanceof DiscordAPIError ? err.status : undefined;
    super(`${what} failed: ${code !== undefined ? `Discord ${status} (code ${code})` : ((err as { code?: string }).code ?? "network error")}`);
    this.name = "WebhookError";
    this.code = code;
    this.status = status;
  }
}

/**
 * The one webhook per channel that Friend posts characters through: found in SQLite, else among
 * the channel's webhooks that Friend's application made, else created on first use. Its token is
 * a secret: it is kept in SQLite and in memory, and never logged.
 */
export class CharacterWebhooks {
  /** Channel id → its webhook, or why there is none and until when that answer holds. */
  readonly #known = new Map<string, WebhookCredentials | { refused: FallbackReason; until: number }>();
  /** One lookup or creation per channel at a time. */
  readonly #resolving = new Map<string, Promise<WebhookCredentials | FallbackReason>>();

  constructor(
    private readonly rest: REST,
    private readonly store: WebhookStore,
    private readonly applicationId: () => string | undefined,
    private readonly logger: Logger,
  ) {}

  /** The id of Friend's webhook in a channel (a thread's parent), so its posts are never read as input. */
  ownWebhookId(channelId: string): string | undefined {
    const known = this.#known.get(channelId);
    if (known && "id" in known) return known.id;
    try {
      return this.store.getWebhook(channelId)?.id;
    } catch {
      return undefined; // a store that cannot be read: Discord marks webhook posts as bots', ignored anyway
    }
  }

  /** Where a channel posts characters, or why it cannot. */
  async targetFor(channel: Channel): Promise<WebhookTarget | FallbackReason> {
    if (channel.isDMBased()) return "dm";
    const threadId = channel.isThread() ? channel.id : undefined;
    const channelId = channel.isThread() ? channel.parentId : channel.id;
    if (!channelId) return "error";
    const webhook = await this.#webhook(channelId);
    return typeof webhook === "string" ? webhook : { webhook, channelId, ...(threadId ? { threadId } : {}) };
  }

  /**
   * Why the channel's characters post as Friend with the name in bold, as last found (nothing is
   * asked of Discord); undefined while they post through the webhook, or before anyone tried.
   */
  refusal(channel: Channel): FallbackReason | undefined {
    if (channel.isDMBased()) return "dm";
    const channelId = channel.isThread() ? channel.parentId : channel.id;
    const known = channelId ? this.#known.get(channelId) : undefined;
    return known && "refused" in known ? known.refused : undefined;
  }

  /** The webhook was deleted behind Friend's back: forgotten, so the next post creates another. */
  forget(channelId: string, webhookId: string): void {
    const known = this.#known.get(channelId);
    if (known && "id" in known && known.id !== webhookId) return; // already replaced
    this.#known.delete(channelId);
    try {
      this.store.setWebhook(channelId, null);
    } catch (err) {
      this.logger.warn({ err, channel: channelId }, "could not forget a deleted webhook in the database");
    }
  }

  /** Remembers a webhook message as part `part` of the reply to `triggerId`, for catch-up after a crash. */
  begin(triggerId: string, part: number, messageId: string): void {
    this.#safely("remember a begun reply", () => this.store.beginWebhookPart(triggerId, part, messageId));
  }

  /** The webhook messages of an unfinished reply to `triggerId` (none when the store cannot be read). */
  begun(triggerId: string): string[] {
    return this.#safely("read a begun reply", () => this.store.webhookParts(triggerId)) ?? [];
  }

  finished(triggerId: string): void {
    this.#safely("forget a finished reply", () => this.store.forgetWebhookParts(triggerId));
  }

  #safely<T>(what: string, run: () => T): T | undefined {
    try {
      return run();
    } catch (err) {
      this.logger.warn({ err, what }, "webhook bookkeeping in the database failed");
      return undefined;
    }
  }

  async execute(target: WebhookTarget, character: CastMember, content: string): Promise<PostedPart> {
    const body = { content, username: character.name, ...(character.avatarUrl ? { avatar_url: character.avatarUrl } : {}), allowed_mentions: NO_MENTIONS };
    const query = new URLSearchParams({ wait: "true", ...(target.threadId ? { thread_id: target.threadId } : {}) });
    const message = (await this.#call("posting as a character", () => this.rest.post(Routes.webhook(target.webhook.id, target.webhook.token), { body, query, auth: false }))) as { id: string };
    return { id: message.id, content };
  }

  async edit(target: WebhookTarget, messageId: string, content: string): Promise<PostedPart> {
    const query = target.threadId ? new URLSearchParams({ thread_id: target.threadId }) : undefined;
    await this.#call("editing a character's message", () =>
      this.rest.patch(Routes.webhookMessage(target.webhook.id, target.webhook.token, messageId), { body: { content, allowed_mentions: NO_MENTIONS }, ...(query ? { query } : {}), auth: false }),
    );
    return { id: messageId, content };
  }

  async delete(target: WebhookTarget, messageId: string): Promise<void> {
    const query = target.threadId ? new URLSearchParams({ thread_id: target.threadId }) : undefined;
    await this.#call("deleting a character's message", () => this.rest.delete(Routes.webhookMessage(target.webhook.id, target.webhook.token, messageId), { ...(query ? { query } : {}), auth: false }));
  }

  async #call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await retryClosedSocket(run);
    } catch (err) {
      throw new WebhookError(what, err);
    }
  }

  #webhook(channelId: string): Promise<WebhookCredentials | FallbackReason> {
    const known = this.#known.get(channelId);
    if (known && "id" in known) return Promise.resolve(known);
    if (known && known.until > Date.now()) return Promise.resolve(known.refused);
    let resolving = this.#resolving.get(channelId);
    if (!resolving) {
      resolving = this.#findOrCreate(channelId).finally(() => this.#resolving.delete(channelId));
      this.#resolving.set(channelId, resolving);
    }
    return resolving;
  }

  async #findOrCreate(channelId: string): Promise<WebhookCredentials | FallbackReason> {
    const log = this.logger.child({ channel: channelId });
    let stored: WebhookCredentials | undefined;
    try {
      stored = this.store.getWebhook(channelId);
    } catch (err) {
      log.warn({ err }, "could not read the channel's webhook from the database; looking on Discord");
    }
    if (stored) return this.#remember(channelId, stored, false);
    try {
      // A webhook Friend made before (its row lost with the database) is reused rather than piling up.
      const existing = (await this.rest.get(Routes.channelWebhooks(channelId))) as { id: string; token?: string; application_id?: string | null }[];
      const mine = existing.find((w) => w.token && w.application_id === this.applicationId());
      if (mine) return this.#remember(channelId, { id: mine.id, token: mine.token! }, true);
      const created = (await this.rest.post(Routes.channelWebhooks(channelId), { body: { name: WEBHOOK_NAME } })) as { id: string; token: string };
      log.info({ webhook: created.id }, "created the channel's webhook for the cast");
      return this.#remember(channelId, { id: created.id, token: created.token }, true);
    } catch (err) {
      const code = discordCode(err);
      const reason: FallbackReason = code === 50013 ? "permission" : code === 30007 ? "limit" : "error";
      log.warn({ err: new WebhookError("getting the channel's webhook", err), reason }, "cannot post as a character here; posting as Friend with the name in bold");
      // A passing error is tried again soon; a refusal only after a while.
      this.#known.set(channelId, { refused: reason, until: Date.now() + (reason === "error" ? 60_000 : RETRY_REFUSED_MS) });
      return reason;
    }
  }

  #remember(channelId: string, webhook: WebhookCredentials, save: boolean): WebhookCredentials {
    this.#known.set(channelId, webhook);
    if (save) {
      try {
        this.store.setWebhook(channelId, webhook);
      } catch (err) {
        this.logger.warn({ err, channel: channelId }, "could not save the channel's webhook; it is found again on Discord after a restart");
      }
    }
    return webhook;
  }
}

/**
 * Posts one reply as a character: through the channel's webhook under the character's name and
 * avatar, or, where that cannot be (a DM, no Manage Webhooks, the webhook limit), as Friend with
 * the name in bold. A webhook deleted behind Friend's back is created again, once per reply.
 */
export class CharacterPoster implements PartPoster {
  #target: Promise<WebhookTarget | FallbackReason> | undefined;
  #recreated = false;
  /** The index the next webhook message gets among this reply's parts. */
  #nextPart: number;
  readonly #fallback: BotPoster;
  readonly reserve: number;

  constructor(
    private readonly webhooks: CharacterWebhooks,
    private readonly character: CastMember,
    private readonly trigger: Message<boolean>,
    private readonly onFallback: (reason: FallbackReason) => void,
    /** Webhook messages of this reply already on Discord (catch-up after a crash). */
    begun = 0,
  ) {
    this.#nextPart = begun;
    this.#fallback = new BotPoster(trigger, `**${character.name}:** `);
    this.reserve = this.#fallback.reserve;
  }

  async post(content: string): Promise<PostedPart> {
    for (;;) {
      const target = await (this.#target ??= this.webhooks.targetFor(this.trigger.channel));
      if (typeof target === "string") {
        this.onFallback(target);
        return this.#fallback.post(content);
      }
      try {
        const part = await this.webhooks.execute(target, this.character, content);
        this.webhooks.begin(this.trigger.id, this.#nextPart++, part.id);
        return part;
      } catch (err) {
        if (!this.#retryAfter(err, target)) throw err;
      }
    }
  }

  async edit(part: PostedPart, content: string): Promise<PostedPart> {
    if (part.message) return this.#fallback.edit(part, content);
    const target = await (this.#target ??= this.webhooks.targetFor(this.trigger.channel));
    if (typeof target === "string") throw new Error("a webhook part without a webhook");
    try {
      return await this.webhooks.edit(target, part.id, content);
    } catch (err) {
      // The webhook is gone, and its messages can no longer be edited: the text goes out anew.
      if (!this.#retryAfter(err, target)) throw err;
      return this.post(content);
    }
  }

  async remove(part: PostedPart): Promise<void> {
    if (part.message) return this.#fallback.remove(part);
    const target = await (this.#target ??= this.webhooks.targetFor(this.trigger.channel));
    if (typeof target === "string") return;
    await this.webhooks.delete(target, part.id).catch((err: unknown) => {
      if ((err as WebhookError).code !== 10008 && (err as WebhookError).code !== 10015) throw err; // already gone
    });
  }

  finished(): void {
    this.webhooks.finished(this.trigger.id);
  }

  /** 404 Unknown Webhook: forgets it and, once per reply, looks again (which creates a new one). */
  #retryAfter(err: unknown, target: WebhookTarget): boolean {
    if ((err as WebhookError).code !== 10015 || this.#recreated) return false;
    this.#recreated = true;
    this.webhooks.forget(target.channelId, target.webhook.id);
    this.#target = undefined;
    return true;
  }
}
