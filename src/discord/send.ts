import type { Message, MessageMentionOptions } from "discord.js";
import type { ReplySink } from "../conversation/conversation.ts";
import { splitMessage } from "../reply/split.ts";

/** Model output never pings anyone: no @everyone, @here, roles or users, not even the asker. */
export const NO_MENTIONS: MessageMentionOptions = { parse: [], users: [], roles: [], repliedUser: false };

/**
 * Posts Friend's reply to one Discord message: typing while it thinks, a reply that is edited as
 * text streams in, then the final text split into as many messages as it needs.
 */
export class DiscordReply implements ReplySink {
  #posted: Message | null = null;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly trigger: Message) {}

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
        if ("send" in this.trigger.channel) await this.trigger.channel.send({ content: chunk, allowedMentions: NO_MENTIONS });
      }
    });
  }

  /** The first text replies to the trigger; later text edits that reply. */
  async #show(content: string): Promise<void> {
    if (this.#posted) {
      if (this.#posted.content !== content) this.#posted = await this.#posted.edit({ content, allowedMentions: NO_MENTIONS });
      return;
    }
    // If the trigger was deleted meanwhile, post without the reference instead of failing.
    this.#posted = await this.trigger.reply({ content, allowedMentions: NO_MENTIONS, failIfNotExists: false });
  }

  /** Edits must land in order even when the conversation does not wait for them. */
  #serial(step: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(step);
    this.#queue = next.catch(() => {});
    return next;
  }
}
