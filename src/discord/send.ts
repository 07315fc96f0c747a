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
 * text streams in, then the final text split into as many messages as it needs.
 */
export class DiscordReply implements ReplySink {
  #queue: Promise<unknown> = Promise.resolve();

  /** `posted`: a reply already on Discord (found after a restart) that this one edits instead of posting anew. */
  constructor(
    private readonly trigger: Message<boolean>,
    private posted: Message<boolean> | null = null,
  ) {}

  async typing(): Promise<void> {
    if ("sendTyping" in this.trigger.channel) await this.trigger.channel.sendTyping();
  }

  update(text: string): Promise<void> {
    return this.#serial(() => this.#show(text));
  }

  finish(text: string): Promise<void> {
    return this.#serial(async () => {
      const [first, ...rest] = splitMessage(text);
      await this.#show(first ?? text);
      for (const chunk of rest) {
        const { channel } = this.trigger;
        if ("send" in channel) await retryClosedSocket<unknown>(() => channel.send({ content: chunk, allowedMentions: NO_MENTIONS }));
      }
    });
  }

  /** The first text replies to the trigger; later text edits that reply. */
  async #show(content: string): Promise<void> {
    const posted = this.posted;
    if (posted) {
      if (posted.content !== content) this.posted = await retryClosedSocket(() => posted.edit({ content, allowedMentions: NO_MENTIONS }));
      return;
    }
    // If the trigger was deleted meanwhile, post without the reference instead of failing.
    this.posted = await retryClosedSocket(() => this.trigger.reply({ content, allowedMentions: NO_MENTIONS, failIfNotExists: false }));
  }

  /** Edits must land in order even when the conversation does not wait for them. */
  #serial(step: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(step);
    this.#queue = next.catch(() => {});
    return next;
  }
}
