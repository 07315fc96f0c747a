import { ApplicationIntegrationType, InteractionContextType, MessageFlags, SlashCommandBuilder } from "discord.js";
import type { SlashCommand } from "./command.ts";

/** `/reset`: Friend forgets this channel's conversation, in memory, on disk and in the local KV cache. */
export const resetCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("reset")
    .setDescription("Make Friend forget this channel's conversation")
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),

  async execute(interaction, { conversation }) {
    const { turns } = conversation.windowSize(interaction.channelId);
    conversation.reset(interaction.channelId);
    await interaction.reply({ content: `Okay, fresh start. I forgot the last ${turns} turn${turns === 1 ? "" : "s"} here.`, flags: MessageFlags.Ephemeral });
  },
};
