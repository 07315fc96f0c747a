import { ApplicationIntegrationType, EmbedBuilder, InteractionContextType, MessageFlags, SlashCommandBuilder } from "discord.js";
import { modelSourceName, parseModelSource } from "../../core/model-source.ts";
import type { SlashCommand } from "./command.ts";

function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor((s % 86400) / 3600), "h"], [Math.floor((s % 3600) / 60), "m"], [s % 60, "s"]] as const;
  return parts.filter(([n], i) => n > 0 || i === parts.length - 1).map(([n, u]) => `${n}${u}`).join(" ");
}

/** e.g. "12 (340.5 MiB of 2048 MiB)". */
export function describeSavedStates(states: { files: number; bytes: number; budgetBytes: number }): string {
  const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
  return `${states.files} (${mib(states.bytes)} MiB of ${mib(states.budgetBytes)} MiB)`;
}

/** `/status`: the channel's persona (and why its character posts as Friend, if so), backend and model, the local model's state, the window size, how long turns are kept, saved channel states, uptime and version. */
export const statusCommand: SlashCommand = {
  data: new SlashCommandBuilder()
    .setName("status")
    .setDescription("Show Friend's model, memory and uptime for this channel")
    .setIntegrationTypes(ApplicationIntegrationType.GuildInstall)
    .setContexts(InteractionContextType.Guild, InteractionContextType.BotDM)
    .toJSON(),

  async execute(interaction, { config, conversation, backends, startedAt, version, characterFallback }) {
    const backend = conversation.backendOf(interaction.channelId);
    const persona = conversation.personaOf(interaction.channelId);
    // A character who cannot post under their own name here: whoever asks sees why (it may have begun after /persona).
    const fallback = persona.name === config.settings.persona.name ? null : (characterFallback?.(interaction.channelId) ?? null);
    const openai = backends.openai.describe();
    const local = backends.created().find((b) => b.name === "local")?.describe();
    const window = conversation.windowSize(interaction.channelId);
    const embed = new EmbedBuilder()
      .setTitle(`${config.settings.persona.name} — status`)
      .addFields(
        { name: "Persona here", value: fallback ? `${persona.name}, posted by me as **${persona.name}:** (${fallback})` : persona.name, inline: true },
        { name: "Backend here", value: backend, inline: true },
        { name: "OpenAI model", value: openai.model, inline: true },
        { name: "Local model", value: local?.model ?? modelSourceName(parseModelSource(config.local.modelPath)), inline: true },
        { name: "Adapter", value: local?.adapter ?? (config.local.loraPath ? modelSourceName(parseModelSource(config.local.loraPath)) : "none"), inline: true },
        { name: "Local model loaded", value: local?.loaded ? "yes" : (local?.progress?.text ?? "no"), inline: true },
        { name: "llama.cpp", value: local?.binary ?? config.local.build, inline: true },
        ...(local?.savedStates ? [{ name: "Saved channel states", value: describeSavedStates(local.savedStates), inline: true }] : []),
        { name: "Window", value: window ? `${window.turns} turns, ${window.tokens} tokens` : "unreadable (database error)", inline: true },
        { name: "Kept for", value: `${config.retentionDays} day${config.retentionDays === 1 ? "" : "s"}`, inline: true },
        { name: "Uptime", value: formatUptime(Date.now() - startedAt), inline: true },
        { name: "Version", value: version, inline: true },
      );
    await interaction.reply({ embeds: [embed], flags: MessageFlags.Ephemeral });
  },
};
