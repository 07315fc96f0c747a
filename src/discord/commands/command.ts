import type { ChatInputCommandInteraction, RESTPostAPIChatInputApplicationCommandsJSONBody } from "discord.js";
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
}

/** One slash command: its registration payload and its handler, in one module. */
export interface SlashCommand {
  data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  execute(interaction: ChatInputCommandInteraction, context: CommandContext): Promise<void>;
}
