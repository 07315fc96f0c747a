// Starts the test suite's fake Discord and fake OpenAI on loopback and prints the environment a
// Friend process needs to use them, as one JSON line. Runs until killed. Used by container-smoke.sh.
import { FakeDiscord } from "../test/fakes/discord.ts";
import { FakeOpenAI } from "../test/fakes/openai-chat.ts";

const discord = await FakeDiscord.start();
const openai = await FakeOpenAI.start();
console.log(
  JSON.stringify({
    DISCORD_TOKEN: discord.token,
    DISCORD_API_URL: discord.apiUrl,
    OPENAI_API_KEY: "sk-smoke",
    OPENAI_BASE_URL: openai.baseURL,
    OPENAI_MODEL: "ft:smoke",
  }),
);
const stop = async () => {
  await discord.stop();
  await openai.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
