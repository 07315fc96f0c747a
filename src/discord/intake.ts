import { cleanContent, MessageType, type Message } from "discord.js";
import type { IncomingMessage } from "../conversation/conversation.ts";

export interface IntakeRules {
  botUserId: string;
  /** Channels where Friend answers every message. */
  channels: ReadonlySet<string>;
  /** When not empty, mentions and replies are answered only in these channels. */
  allowChannels: ReadonlySet<string>;
  denyChannels: ReadonlySet<string>;
  allowDms: boolean;
  /** The id of the webhook Friend posts characters through in a channel (a thread's parent), if any. */
  ownWebhookId?: (channelId: string) => string | undefined;
}

export type IntakeDecision = { answer: true; message: IncomingMessage } | { answer: false; reason: string };

export type ChannelRules = Omit<IntakeRules, "botUserId" | "ownWebhookId">;

/** Friend's webhook where the message was posted: a thread's is its parent channel's. */
function ownWebhook(message: Message, rules: IntakeRules): string | undefined {
  if (!message.inGuild() || !rules.ownWebhookId) return undefined;
  const channelId = message.channel.isThread() ? message.channel.parentId : message.channelId;
  return channelId ? rules.ownWebhookId(channelId) : undefined;
}

/**
 * Whether Friend works in a channel at all (messages and slash commands alike): DMs when allowed,
 * never a denied channel, and only allowed ones when there is an allow list.
 */
export function channelVerdict(channelId: string, inGuild: boolean, rules: ChannelRules): "answer-all" | "addressed" | "refused" {
  if (!inGuild) return rules.allowDms ? "addressed" : "refused";
  if (rules.denyChannels.has(channelId)) return "refused";
  if (rules.channels.has(channelId)) return "answer-all";
  if (rules.allowChannels.size > 0 && !rules.allowChannels.has(channelId)) return "refused";
  return "addressed";
}

/** Why Friend would answer: a DM, a mention, a reply to Friend, or a channel where it answers everything. */
export function addressReason(message: Message, rules: IntakeRules): string | null {
  const verdict = channelVerdict(message.channelId, message.inGuild(), rules);
  if (verdict === "refused") return null;
  if (!message.inGuild()) return "dm";
  if (verdict === "answer-all") return "channel";
  if (message.mentions.users.has(rules.botUserId)) return "mention";
  if (message.reference?.messageId && message.mentions.repliedUser?.id === rules.botUserId) return "reply";
  if (message.reference?.messageId && repliedCharacter(message, rules) !== undefined) return "reply";
  return null;
}

/** The character whose webhook post the message replies to (a webhook post's author is the webhook, named as the character). */
function repliedCharacter(message: Message, rules: IntakeRules): string | undefined {
  const replied = message.mentions.repliedUser;
  const own = ownWebhook(message, rules);
  return replied && own !== undefined && replied.id === own ? replied.username : undefined;
}

/**
 * Decides whether a Discord message is for Friend, and if so turns it into plain conversation
 * input: the bot's own mention removed, other mentions rendered as names.
 */
export function intake(message: Message, rules: IntakeRules): IntakeDecision {
  // Friend's own posts as a character come back through the gateway; reading them would be an echo loop.
  if (message.webhookId && message.webhookId === ownWebhook(message, rules)) return { answer: false, reason: "own webhook" };
  if (message.author.bot) return { answer: false, reason: "bot" };
  if (message.system || (message.type !== MessageType.Default && message.type !== MessageType.Reply)) return { answer: false, reason: "system" };
  const why = addressReason(message, rules);
  if (!why) return { answer: false, reason: "not addressed" };
  const withoutMention = message.content.replace(new RegExp(`<@!?${rules.botUserId}>`, "g"), " ");
  const text = cleanContent(withoutMention, message.channel).trim();
  if (!text) return { answer: false, reason: "no text" };
  const character = why === "reply" ? repliedCharacter(message, rules) : undefined;
  return {
    answer: true,
    message: {
      id: message.id,
      channelId: message.channelId,
      authorId: message.author.id,
      authorName: message.member?.displayName ?? message.author.displayName,
      text,
      at: message.createdTimestamp,
      ...(character !== undefined ? { character } : {}),
      ...(message.guildId ? { guildId: message.guildId } : {}),
      ...(message.channel.isThread() && message.channel.parentId ? { parentId: message.channel.parentId } : {}),
    },
  };
}
