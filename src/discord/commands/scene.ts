import { ApplicationIntegrationType, InteractionContextType, MessageFlags, PermissionFlagsBits, SlashCommandBuilder } from "discord.js";
import { MAX_SCENE_LINES } from "../../reply/scene.ts";
import type { SlashCommand } from "./command.ts";

const DEFAULT_LINES = 3;

/** `/scene on [lines]` and `/scene off`: whether the model's follow-on lines by other characters are posted too. */
export const sceneCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("scene")
    .setDescription("Let other Friends characters chime in after each reply in this channel")
    .addSubcommand((s) =>
      s
        .setName("on")
        .setDescription("Post the scene the model writes after each reply, line by line")
        .addIntegerOption((o) => o.setName("lines").setDescription(`At most this many lines (default ${DEFAULT_LINES})`).setMinValue(1).setMaxValue(MAX_SCENE_LINES)),
    )
    .addSubcommand((s) => s.setName("off").setDescription("Only the persona answers; follow-on lines are cut"))
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageChannels)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),

  async execute(interaction, { conversation }) {
    // Server admins can grant the command to anyone, so the permission is checked here too.
    if (interaction.inGuild() && !interaction.memberPermissions?.has(PermissionFlagsBits.ManageChannels)) {
      await interaction.reply({ content: "You need the Manage Channels permission in this channel to turn scenes on or off.", flags: MessageFlags.Ephemeral });
      return;
    }
    const on = interaction.options.getSubcommand() === "on";
    const lines = on ? Math.min(MAX_SCENE_LINES, Math.max(1, interaction.options.getInteger("lines") ?? DEFAULT_LINES)) : 0;
    conversation.setScene(interaction.channelId, lines);
    const content = on
      ? `Scenes are on: after each reply, up to ${lines} line${lines === 1 ? "" : "s"} by other characters follow, each under their own name. A new message stops a scene.`
      : "Scenes are off: only the persona answers.";
    await interaction.reply({ content, flags: MessageFlags.Ephemeral });
  },
};
