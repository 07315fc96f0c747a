import { ApplicationIntegrationType, InteractionContextType, MessageFlags, SlashCommandBuilder } from "discord.js";
import { NOT_DURABLE_YET, type Forgotten } from "../../conversation/conversation.ts";
import type { SlashCommand } from "./command.ts";

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** What the user reads: what was removed, in plain words. */
/** When the database could not be read: what was in memory is gone, the rest may not be. */
export const FORGET_PARTIAL = "I couldn't read my database just now, so some of what you said may still be there. Try /forget again in a minute.";

export function describeForgotten(forgotten: Forgotten): string {
  const { channels, turns, replies, unanswered, durable, partial } = forgotten;
  if (partial) return channels === 0 ? FORGET_PARTIAL : `${describeForgotten({ ...forgotten, partial: false })} ${FORGET_PARTIAL}`;
  if (channels === 0) return "I had nothing of yours to forget.";
  const parts: string[] = [];
  if (turns > 0) parts.push(count(turns, "message of yours", "messages of yours"));
  if (unanswered > 0) parts.push(`${count(unanswered, "message", "messages")} of yours I hadn't answered yet`);
  if (replies > 0) parts.push(`${count(replies, "of my replies", "of my replies")} to you`);
  const list = parts.length > 1 ? `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}` : parts[0];
  const done = `Done. I forgot ${list}, in ${count(channels, "channel", "channels")}.`;
  return durable ? done : `${done} ${NOT_DURABLE_YET}`;
}

/**
 * `/forget`: Friend forgets everything the user said to it, in every channel and DM, and its
 * replies to them. It is the user's own right: no permission, and it works wherever the command
 * can be used, even where Friend is switched off.
 */
export const forgetCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("forget")
    .setDescription("Make Friend forget everything you said to it, in every channel and DM")
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),
  ignoresChannelRules: true,

  async execute(interaction, { conversation }) {
    const forgotten = conversation.forget(interaction.user.id);
    await interaction.reply({ content: describeForgotten(forgotten), flags: MessageFlags.Ephemeral });
  },
};
