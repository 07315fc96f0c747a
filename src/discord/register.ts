import { REST, Routes, type APIApplication } from "discord.js";
import dotenv from "dotenv";
import { ConfigError } from "../config/errors.ts";
import { loadConfig } from "../config/env.ts";
import type { CommandIo } from "../commandline/io.ts";
import { registerCommands } from "./commands/index.ts";

/** `friend register` (`npm run register`): registers the slash commands by hand, as start-up does. */
export async function runRegister(_argv: string[], io: CommandIo): Promise<number> {
  // .env fills in what the environment lacks, as for `npm start`.
  const env = { ...dotenv.config({ quiet: true, processEnv: {} }).parsed, ...io.env };
  let config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(err.message);
    return 1;
  }
  const rest = new REST({ api: config.discord.apiUrl }).setToken(config.discord.token);
  const app = (await rest.get(Routes.currentApplication())) as APIApplication;
  const count = await registerCommands(rest, app.id, config.discord.guildId);
  io.out(`Registered ${count} slash commands ${config.discord.guildId ? `in guild ${config.discord.guildId}` : "globally (may take up to an hour to appear)"}.`);
  return 0;
}
