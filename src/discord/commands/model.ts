import { ApplicationIntegrationType, InteractionContextType, MessageFlags, PermissionFlagsBits, SlashCommandBuilder } from "discord.js";
import { BACKEND_NAMES, type BackendInfo, type BackendName } from "../../core/backend.ts";
import type { SlashCommand } from "./command.ts";

/**
 * Discord lets a bot edit an interaction's reply for 15 minutes; a 4 GB download takes longer on
 * a slow line. /model stops waiting before then, and says the download carries on.
 */
const INTERACTION_WAIT_MS = 14 * 60_000;

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

  async execute(interaction, { config, backends, conversation }) {
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
    const ready = backends.unavailableReason(choice as BackendName);
    const reason = await showingDownloads(
      untilTimeout(ready, config.discord.interactionWaitMs ?? INTERACTION_WAIT_MS),
      () => backends.get(choice as BackendName).describe().progress,
      (text) => interaction.editReply(`Getting **${choice}** ready: ${text}…`),
      config.settings.generation.streamEditIntervalMs,
    );
    if (reason === TIMED_OUT) {
      const progress = backends.get(choice as BackendName).describe().progress?.text;
      await interaction.editReply(
        `Still getting **${choice}** ready${progress ? ` (${progress})` : ""}; that carries on without this reply. Run \`/model ${choice}\` again when \`/status\` shows it loaded. This channel still uses **${current}**.`,
      );
      return;
    }
    if (reason) {
      await interaction.editReply(`Can't switch to **${choice}**: ${reason} This channel still uses **${current}**.`);
      return;
    }
    // A reply in flight finishes on the backend that started it; this applies from the next turn.
    conversation.setBackend(channelId, choice as BackendName);
    await interaction.editReply(`Switched this channel to ${describeBackend(backends.get(choice as BackendName).describe())}.`);
  },
};

/**
 * Waits for `ready`, and once a download or an adapter import is part of the wait (a 4 GB model
 * takes minutes), edits the reply with each new progress text. The last progress edit lands before `ready`'s own reply.
 */
async function showingDownloads<T>(ready: Promise<T>, progress: () => BackendInfo["progress"], show: (text: string) => Promise<unknown>, everyMs: number): Promise<T> {
  let downloading = false;
  let shown: string | undefined;
  let edits: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    const now = progress();
    downloading ||= now?.step === "downloading" || now?.step === "importing";
    if (!downloading || !now || now.text === shown) return;
    shown = now.text;
    edits = edits.then(() => show(now.text)).catch(() => undefined);
  }, everyMs);
  try {
    return await ready;
  } finally {
    clearInterval(timer);
    await edits;
  }
}

const TIMED_OUT = Symbol("timed out");

/** Settles like `promise`, or with TIMED_OUT after `ms` (the promise goes on). */
function untilTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms)))]).finally(() => clearTimeout(timer));
}
