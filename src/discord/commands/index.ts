import { MessageFlags, Routes, type Interaction, type REST } from "discord.js";
import type { Logger } from "pino";
import { channelVerdict } from "../intake.ts";
import type { CommandContext, SlashCommand } from "./command.ts";
import { forgetCommand } from "./forget.ts";
import { modelCommand } from "./model.ts";
import { personaCommand } from "./persona.ts";
import { resetCommand } from "./reset.ts";
import { sceneCommand } from "./scene.ts";
import { statusCommand } from "./status.ts";

/** Every slash command Friend has. Adding one is adding a module and a line here. */
export const COMMANDS: readonly SlashCommand[] = [modelCommand, personaCommand, resetCommand, sceneCommand, statusCommand, forgetCommand];

/** Registers all commands in one bulk overwrite: in one guild (instant) when given, else globally. */
export async function registerCommands(rest: REST, applicationId: string, guildId?: string): Promise<number> {
  const route = guildId ? Routes.applicationGuildCommands(applicationId, guildId) : Routes.applicationCommands(applicationId);
  const registered = (await rest.put(route, { body: COMMANDS.map((c) => c.data) })) as unknown[];
  return registered.length;
}

/** Routes an interaction to its command. Failures become an ephemeral apology, never a crash. */
export function commandHandler(context: CommandContext, logger: Logger): (interaction: Interaction) => Promise<void> {
  return async (interaction) => {
    if (interaction.isAutocomplete()) {
      // Suggestions only: nothing is changed, so the channel rules wait for the command itself.
      const command = COMMANDS.find((c) => c.data.name === interaction.commandName);
      await command?.autocomplete?.(interaction, context).catch((err: unknown) => logger.warn({ err, command: interaction.commandName }, "autocomplete failed"));
      return;
    }
    if (!interaction.isChatInputCommand()) return;
    const command = COMMANDS.find((c) => c.data.name === interaction.commandName);
    const log = logger.child({ command: interaction.commandName, channel: interaction.channelId, interaction: interaction.id });
    if (!command) {
      await interaction.reply({ content: `Unknown command /${interaction.commandName}.`, flags: MessageFlags.Ephemeral });
      return;
    }
    // Commands follow the same channel rules as messages, except a user's own /forget.
    if (!command.ignoresChannelRules && channelVerdict(interaction.channelId, interaction.inGuild(), context.config.discord) === "refused") {
      const where = interaction.inGuild() ? "in this channel" : "in direct messages";
      await interaction.reply({ content: `${context.config.settings.persona.name} is switched off ${where}.`, flags: MessageFlags.Ephemeral });
      log.info("command refused by the channel rules");
      return;
    }
    try {
      await command.execute(interaction, context);
      log.info("command handled");
    } catch (err) {
      log.error({ err }, "command failed");
      const content = "Sorry, that didn't work. Try again in a moment.";
      if (interaction.deferred || interaction.replied) await interaction.editReply(content).catch(() => {});
      else await interaction.reply({ content, flags: MessageFlags.Ephemeral }).catch(() => {});
    }
  };
}
