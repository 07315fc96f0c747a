import type { Message, MessageMentionOptions } from "discord.js";
import type { ReplySink } from "../conversation/session.ts";
import { splitMessage } from "../reply/split.ts";

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

/** Runs a Discord call, once more if the socket was closed under it: a reply must not be lost to a stale connection. */
async function retryClosedSocket<T>(call: () => Promise<T>): Promise<T> {
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
  #parts: Message<boolean>[];

  /** `posted`: the parts of a reply already on Discord (found after a restart), edited instead of posted anew. */
  constructor(
    private readonly trigger: Message<boolean>,
    posted: readonly Message<boolean>[] = [],
  ) {
    this.#parts = [...posted];
  }

  async typing(): Promise<void> {
    if ("sendTyping" in this.trigger.channel) await this.trigger.channel.sendTyping();
  }

  /** While a reply grows, only its first message is shown; the rest is posted when it is final. */
  update(text: string): Promise<void> {
    return this.#serial(() => this.#show(0, splitMessage(text)[0] ?? text));
  }

  notice(text: string): Promise<void> {
    return this.#serial(() => this.#show(0, text));
  }

  finish(text: string): Promise<void> {
    return this.#serial(async () => {
      const chunks = splitMessage(text);
      for (const [i, chunk] of chunks.entries()) await this.#show(i, chunk);
      await this.#removeFrom(chunks.length);
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

  /** Part `i` shows `content`: edited when it is on Discord, else posted as a reply to the trigger. */
  async #show(i: number, content: string): Promise<void> {
    const part = this.#parts[i];
    if (part) {
      if (part.content !== content) this.#parts[i] = await retryClosedSocket(() => part.edit({ content, allowedMentions: NO_MENTIONS }));
      return;
    }
    // If the trigger was deleted meanwhile, post without the reference instead of failing.
    this.#parts.push(await retryClosedSocket(() => this.trigger.reply({ content, allowedMentions: NO_MENTIONS, failIfNotExists: false })));
  }

  /** Deletes the parts from `i` on (a reply that came out shorter than the one begun before a restart). */
  async #removeFrom(i: number): Promise<void> {
    for (const part of this.#parts.splice(i).reverse()) await retryClosedSocket(() => part.delete()).catch((err: unknown) => {
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
