import { ApplicationIntegrationType, InteractionContextType, MessageFlags, PermissionFlagsBits, SlashCommandBuilder } from "discord.js";
import { findCastMember, type CastMember } from "../../core/cast.ts";
import type { SlashCommand } from "./command.ts";

/** Discord shows at most 25 autocomplete choices. */
const MAX_CHOICES = 25;

/** The cast members whose name or alias starts with (else contains) what the user typed, names first. */
export function castChoices(cast: readonly CastMember[], typed: string): { name: string; value: string }[] {
  const query = typed.trim().toLowerCase();
  const spelled = (m: CastMember) => [m.name, ...m.aliases].map((s) => s.toLowerCase());
  const starts = cast.filter((m) => spelled(m).some((s) => s.startsWith(query)));
  const contains = cast.filter((m) => !starts.includes(m) && spelled(m).some((s) => s.includes(query)));
  return [...starts, ...contains].slice(0, MAX_CHOICES).map((m) => ({ name: m.name, value: m.name }));
}

/** `/persona [character]`: shows or sets who answers in this channel. Setting needs Manage Channels in a server. */
export const personaCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("persona")
    .setDescription("Show or choose the Friends character who answers in this channel")
    .addStringOption((o) => o.setName("character").setDescription("Who answers from the next message on").setRequired(false).setAutocomplete(true))
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageChannels)
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),

  async autocomplete(interaction, { config }) {
    await interaction.respond(castChoices(config.settings.cast, interaction.options.getFocused()));
  },

  async execute(interaction, { config, conversation, characterPosting }) {
    const { cast } = config.settings;
    const channelId = interaction.channelId;
    const current = conversation.personaOf(channelId);
    const choice = interaction.options.getString("character");
    if (choice === null) {
      await interaction.reply({ content: `**${current.name}** answers in this channel. ${current.description}`.trim(), flags: MessageFlags.Ephemeral });
      return;
    }
    const character = findCastMember(cast, choice);
    if (!character) {
      await interaction.reply({ content: `There's no "${choice.slice(0, 64)}" in the cast. Choose one of: ${cast.map((m) => m.name).join(", ")}.`, flags: MessageFlags.Ephemeral });
      return;
    }
    // Server admins can grant the command to anyone, so the permission is checked here too.
    if (interaction.inGuild() && !interaction.memberPermissions?.has(PermissionFlagsBits.ManageChannels)) {
      await interaction.reply({ content: "You need the Manage Channels permission in this channel to choose who answers here.", flags: MessageFlags.Ephemeral });
      return;
    }
    // Finding or creating the channel's webhook can take longer than Discord's 3-second limit.
    await interaction.deferReply({ flags: MessageFlags.Ephemeral });
    // A reply in flight finishes as the character that started it; this applies from the next turn.
    conversation.setPersona(channelId, character);
    const set = `From the next message on, **${character.name}** answers in this channel.`;
    // Whoever chose the persona is told, here and once, why the character will not have their own name and avatar.
    const why = character.name === config.settings.persona.name ? null : await characterPosting?.(channelId).catch(() => null);
    await interaction.editReply(why ? `${set} I can't post under ${character.name}'s own name and avatar here (${why}), so my messages will start with **${character.name}:** instead.` : set);
  },
};
