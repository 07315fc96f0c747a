import { ApplicationIntegrationType, InteractionContextType, MessageFlags, PermissionFlagsBits, SlashCommandBuilder } from "discord.js";
import { BACKEND_NAMES, type BackendName } from "../../core/backend.ts";
import type { SlashCommand } from "./command.ts";

function describeBackend(info: { backend: string; model: string; adapter?: string }): string {
  return `**${info.backend}** (\`${info.model}\`${info.adapter ? ` + \`${info.adapter}\`` : ""})`;
}

/** `/model [backend]`: shows or switches the channel's model. Switching needs Manage Channels in a server. */
export const modelCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("model")
    .setDescription("Show or switch the model Friend uses in this channel")
    .addStringOption((o) =>
      o
        .setName("backend")
        .setDescription("Switch this channel to another backend")
        .setRequired(false)
        .addChoices(...BACKEND_NAMES.map((name) => ({ name, value: name }))),
    )
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageChannels)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),

  async execute(interaction, { backends, conversation }) {
    const channelId = interaction.channelId;
    const current = conversation.backendOf(channelId);
    const choice = interaction.options.getString("backend");
    if (choice === null) {
      await interaction.reply({ content: `This channel uses ${describeBackend(backends.get(current).describe())}.`, flags: MessageFlags.Ephemeral });
      return;
    }
    if (!(BACKEND_NAMES as readonly string[]).includes(choice)) {
      await interaction.reply({ content: `Unknown backend "${choice}". Choose one of: ${BACKEND_NAMES.join(", ")}.`, flags: MessageFlags.Ephemeral });
      return;
    }
    // Server admins can grant the command to anyone, so the permission is checked here too.
    if (interaction.inGuild() && !interaction.memberPermissions?.has(PermissionFlagsBits.ManageChannels)) {
      await interaction.reply({ content: "You need the Manage Channels permission in this channel to switch Friend's model.", flags: MessageFlags.Ephemeral });
      return;
    }
    // Loading a local model can take far longer than Discord's 3-second limit.
    await interaction.deferReply({ flags: MessageFlags.Ephemeral });
    const reason = await backends.unavailableReason(choice as BackendName);
    if (reason) {
      await interaction.editReply(`Can't switch to **${choice}**: ${reason} This channel still uses **${current}**.`);
      return;
    }
    // A reply in flight finishes on the backend that started it; this applies from the next turn.
    conversation.setBackend(channelId, choice as BackendName);
    await interaction.editReply(`Switched this channel to ${describeBackend(backends.get(choice as BackendName).describe())}.`);
  },
};
