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
}

export type IntakeDecision = { answer: true; message: IncomingMessage } | { answer: false; reason: string };

export type ChannelRules = Omit<IntakeRules, "botUserId">;

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
  return null;
}

/**
 * Decides whether a Discord message is for Friend, and if so turns it into plain conversation
 * input: the bot's own mention removed, other mentions rendered as names.
 */
export function intake(message: Message, rules: IntakeRules): IntakeDecision {
  if (message.author.bot) return { answer: false, reason: "bot" };
  if (message.system || (message.type !== MessageType.Default && message.type !== MessageType.Reply)) return { answer: false, reason: "system" };
  const why = addressReason(message, rules);
  if (!why) return { answer: false, reason: "not addressed" };
  const withoutMention = message.content.replace(new RegExp(`<@!?${rules.botUserId}>`, "g"), " ");
  const text = cleanContent(withoutMention, message.channel).trim();
  if (!text) return { answer: false, reason: "no text" };
  return {
    answer: true,
    message: {
      id: message.id,
      channelId: message.channelId,
      authorId: message.author.id,
      authorName: message.member?.displayName ?? message.author.displayName,
      text,
      at: message.createdTimestamp,
      ...(message.guildId ? { guildId: message.guildId } : {}),
      ...(message.channel.isThread() && message.channel.parentId ? { parentId: message.channel.parentId } : {}),
    },
  };
}
