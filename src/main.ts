import dotenv from "dotenv";
import { startFriend } from "./app.ts";
import { ConfigError, StartupError } from "./config/errors.ts";
import { loadConfig } from "./config/env.ts";
import { createLogger } from "./log.ts";
import { StoreError } from "./store/sqlite.ts";

/** After the grace period, time to edit replies cut short and close; past it Friend leaves anyway (a stuck socket, say). */
const SHUTDOWN_CLOSE_MS = 1500;

async function main(): Promise<void> {
  dotenv.config({ quiet: true });
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger({ level: config.logLevel, secrets: [config.discord.token, config.openai.apiKey ?? "", config.local.huggingFaceToken ?? ""] });
  logger.info({ backend: config.defaultBackend, channels: config.discord.channels.size }, "Friend is starting");
  let friend: Awaited<ReturnType<typeof startFriend>> | undefined;
  let exiting = false;
  const shutdown = (signal: string) => {
    if (exiting) return;
    exiting = true;
    logger.info({ signal }, "shutting down");
    setTimeout(() => {
      logger.warn("shutdown took too long; exiting anyway");
      process.exit(0);
    }, config.shutdownGraceMs + SHUTDOWN_CLOSE_MS).unref();
    (friend?.stop() ?? Promise.resolve()).then(
      () => {
        logger.info("bye");
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "error while shutting down");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  // A stray rejection in a library callback must not take every channel down with it.
  process.on("unhandledRejection", (err) => logger.error({ err }, "unhandled promise rejection"));

  try {
    friend = await startFriend(config, logger, { moveCorruptDb: process.argv.includes("--move-corrupt-db") });
  } catch (err) {
    // What the operator must fix, in one line; a stack trace only for what nobody foresaw.
    if (err instanceof StoreError || err instanceof StartupError) {
      console.error(`Friend cannot start: ${err.message}`);
      process.exit(1);
    }
    logger.fatal({ err }, "Friend could not start");
    process.exit(1);
  }
}

await main();
