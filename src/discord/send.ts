import type { Message, MessageMentionOptions } from "discord.js";
import type { CastMember } from "../core/cast.ts";
import type { ReplySink } from "../conversation/session.ts";
import { DISCORD_MESSAGE_LIMIT, splitMessage } from "../reply/split.ts";

/** Model output never pings anyone: no @everyone, @here, roles or users, not even the asker. */
export const NO_MENTIONS: MessageMentionOptions = { parse: [], users: [], roles: [], repliedUser: false };

/**
 * undici's "other side closed": a keep-alive socket that Discord (or a proxy) closed while the
 * request was on its way. discord.js retries ECONNRESET and timeouts itself, but not this.
 */
export function isClosedSocket(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (e.code === "UND_ERR_SOCKET" || e.code === "UND_ERR_CLOSED" || e.code === "EPIPE") return true;
  }
  return false;
}

/** One message of a reply on Discord: `content` is the reply's text in it (without any name the poster adds). */
export interface PostedPart {
  id: string;
  content: string;
  /** Set when Friend posted it as itself (it is edited and deleted through it); unset for a webhook's message. */
  message?: Message<boolean>;
}

/** How the parts of one reply reach Discord: as Friend's replies to the trigger, or as a character through a webhook. */
export interface PartPoster {
  post(content: string): Promise<PostedPart>;
  edit(part: PostedPart, content: string): Promise<PostedPart>;
  remove(part: PostedPart): Promise<void>;
  /** Characters each part must leave free (the bold name a fallback post starts with). */
  readonly reserve: number;
  /** The whole reply is on Discord. */
  finished?(): void;
}

/** Friend's own replies to the trigger; every part replies to it, so catch-up finds them after a crash. */
export class BotPoster implements PartPoster {
  readonly reserve: number;
  constructor(
    private readonly trigger: Message<boolean>,
    /** Put before every part, e.g. a character's name in bold when no webhook can post as them. */
    private readonly prefix = "",
  ) {
    this.reserve = prefix.length;
  }

  async post(content: string): Promise<PostedPart> {
    // If the trigger was deleted meanwhile, post without the reference instead of failing.
    const message = await retryClosedSocket(() => this.trigger.reply({ content: this.prefix + content, allowedMentions: NO_MENTIONS, failIfNotExists: false }));
    return { id: message.id, content, message };
  }

  async edit(part: PostedPart, content: string): Promise<PostedPart> {
    const message = await retryClosedSocket(() => part.message!.edit({ content: this.prefix + content, allowedMentions: NO_MENTIONS }));
    return { id: message.id, content, message };
  }

  async remove(part: PostedPart): Promise<void> {
    await retryClosedSocket(() => part.message!.delete());
  }
}

/**
 * Picks, at the start of a turn, how the character speaking posts; null keeps Friend's own replies.
 * `begun`: how many webhook messages of this reply are already on Discord (catch-up after a crash).
 */
export type PosterFor = (character: CastMember, trigger: Message<boolean>, begun: number) => PartPoster | null;

/** Runs a Discord call, once more if the socket was closed under it: a reply must not be lost to a stale connection. */
export async function retryClosedSocket<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (!isClosedSocket(err)) throw err;
    return await call();
  }
}

/**
 * Posts Friend's reply to one Discord message: typing while it thinks, a reply that is edited as
 * text streams in, then the final text split into as many messages as it needs. Every part replies
 * to the trigger, so after a crash catch-up finds each part it had posted and edits them, rather
 * than posting any part twice.
 */
export class DiscordReply implements ReplySink {
  #queue: Promise<unknown> = Promise.resolve();
  /** The parts on Discord, in order. */
  #parts: PostedPart[];
  #poster: PartPoster;

  /**
   * `posted`: the parts of a reply already on Discord (found after a restart), edited instead of
   * posted anew: Friend's own messages, or the ids of a character's webhook messages
   * (`webhookParts`). `posterFor`: how a character other than Friend posts (a webhook).
   */
  constructor(
    private readonly trigger: Message<boolean>,
    posted: readonly Message<boolean>[] = [],
    private readonly posterFor?: PosterFor,
    webhookParts: readonly string[] = [],
  ) {
    this.#parts = webhookParts.length
      ? webhookParts.map((id) => ({ id, content: "" }))
      : posted.map((message) => ({ id: message.id, content: message.content, message }));
    this.#poster = new BotPoster(trigger);
  }

  /** Told once at the start of the turn; a reply already begun (catch-up) goes on as it was posted. */
  speakAs(character: CastMember): void {
    const begunAsCharacter = this.#parts.filter((p) => !p.message).length;
    if (this.#parts.length > 0 && !begunAsCharacter) return;
    this.#poster = this.posterFor?.(character, this.trigger, begunAsCharacter) ?? new BotPoster(this.trigger);
  }

  async typing(): Promise<void> {
    if ("sendTyping" in this.trigger.channel) await this.trigger.channel.sendTyping();
  }

  /** While a reply grows, only its first message is shown; the rest is posted when it is final. */
  update(text: string): Promise<void> {
    return this.#serial(() => this.#show(0, this.#split(text)[0] ?? text));
  }

  notice(text: string): Promise<void> {
    return this.#serial(() => this.#show(0, text));
  }

  finish(text: string): Promise<void> {
    return this.#serial(async () => {
      const chunks = this.#split(text);
      for (const [i, chunk] of chunks.entries()) await this.#show(i, chunk);
      await this.#removeFrom(chunks.length);
      this.#poster.finished?.();
    });
  }

  /** One line of a scene, as its own message(s) under `character`, after the reply (in order with it). */
  sceneLine(character: CastMember, text: string): Promise<void> {
    return this.#serial(async () => {
      const poster: PartPoster = this.posterFor?.(character, this.trigger, 0) ?? new BotPoster(this.trigger);
      for (const chunk of splitMessage(text, DISCORD_MESSAGE_LIMIT - poster.reserve)) await poster.post(chunk);
      poster.finished?.();
    });
  }

  abandon(text: string): Promise<void> {
    return this.#serial(async () => {
      if (this.#parts.length === 0) return; // nothing half-said stands
      await this.#show(0, text);
      await this.#removeFrom(1);
    });
  }

  discard(): Promise<void> {
    return this.#serial(() => this.#removeFrom(0));
  }

  #split(text: string): string[] {
    return splitMessage(text, DISCORD_MESSAGE_LIMIT - this.#poster.reserve);
  }

  /** Part `i` shows `content`: edited when it is on Discord, else posted (as a reply to the trigger, or as the character). */
  async #show(i: number, content: string): Promise<void> {
    const part = this.#parts[i];
    if (part) {
      if (part.content !== content) this.#parts[i] = await this.#poster.edit(part, content);
      return;
    }
    this.#parts.push(await this.#poster.post(content));
  }

  /** Deletes the parts from `i` on (a reply that came out shorter than the one begun before a restart). */
  async #removeFrom(i: number): Promise<void> {
    for (const part of this.#parts.splice(i).reverse()) await this.#poster.remove(part).catch((err: unknown) => {
      if ((err as { code?: unknown }).code !== 10008) throw err; // Unknown Message: already gone
    });
  }

  /** Edits must land in order even when the conversation does not wait for them. */
  #serial(step: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(step);
    this.#queue = next.catch(() => {});
    return next;
  }
}
