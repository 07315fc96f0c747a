import { ApplicationIntegrationType, InteractionContextType, MessageFlags, PermissionFlagsBits, SlashCommandBuilder } from "discord.js";
import { NOT_DURABLE_YET } from "../../conversation/conversation.ts";
import type { SlashCommand } from "./command.ts";

/**
 * `/reset`: Friend forgets this channel's conversation, in memory, on disk and in the local KV cache.
 * In a server it needs Manage Messages or Manage Channels; in a DM anyone resets their own.
 */
export const resetCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("reset")
    .setDescription("Make Friend forget this channel's conversation")
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageMessages)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),

  async execute(interaction, { conversation }) {
    // Server admins can grant the command to anyone, so the permission is checked here too.
    const permissions = interaction.memberPermissions;
    if (interaction.inGuild() && !permissions?.has(PermissionFlagsBits.ManageMessages) && !permissions?.has(PermissionFlagsBits.ManageChannels)) {
      await interaction.reply({ content: "You need the Manage Messages or Manage Channels permission to reset Friend's memory here.", flags: MessageFlags.Ephemeral });
      return;
    }
    const { turns, durable } = conversation.reset(interaction.channelId);
    const forgot = `Okay, fresh start. I forgot the last ${turns} turn${turns === 1 ? "" : "s"} here.`;
    await interaction.reply({ content: durable ? forgot : `${forgot} ${NOT_DURABLE_YET}`, flags: MessageFlags.Ephemeral });
  },
};
