import type { AutocompleteInteraction, ChatInputCommandInteraction, RESTPostAPIChatInputApplicationCommandsJSONBody } from "discord.js";
import type { Backends } from "../../backends/registry.ts";
import type { Config } from "../../config/env.ts";
import type { Conversation } from "../../conversation/conversation.ts";

/** What a command handler may use. */
export interface CommandContext {
  config: Config;
  conversation: Conversation;
  backends: Backends;
  startedAt: number;
  version: string;
  /** Someone chose a channel's persona: the one told why, if Friend cannot post under the character's name there. */
  onPersonaSet?(channelId: string, userId: string): void;
}

/** One slash command: its registration payload and its handler, in one module. */
export interface SlashCommand {
  data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  execute(interaction: ChatInputCommandInteraction, context: CommandContext): Promise<void>;
  /** Answers the suggestions for an option marked for autocomplete. */
  autocomplete?(interaction: AutocompleteInteraction, context: CommandContext): Promise<void>;
}
