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
  /** Why Friend cannot post under a character's own name in a channel (a DM, no Manage Webhooks, the limit); null when it can. */
  characterPosting?(channelId: string): Promise<string | null>;
  /** Why characters post as Friend with the name in bold in a channel, as last found (asks Discord nothing); null when they do not. */
  characterFallback?(channelId: string): string | null;
}

/** One slash command: its registration payload and its handler, in one module. */
export interface SlashCommand {
  data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  /** Works even where Friend is switched off (denied channels, DMs when not allowed): a user's own right. */
  ignoresChannelRules?: boolean;
  execute(interaction: ChatInputCommandInteraction, context: CommandContext): Promise<void>;
  /** Answers the suggestions for an option marked for autocomplete. */
  autocomplete?(interaction: AutocompleteInteraction, context: CommandContext): Promise<void>;
}
