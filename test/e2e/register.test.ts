import { afterEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli.ts";
import { COMMANDS } from "../../src/discord/commands/index.ts";
import { FakeDiscord } from "../fakes/discord.ts";

let discord: FakeDiscord | undefined;
afterEach(async () => {
  await discord?.stop();
  discord = undefined;
});

function io(env: Record<string, string>) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l), env, cwd: process.cwd(), interrupt: new AbortController().signal } };
}

describe("friend register (npm run register)", () => {
  it("registers the commands in the configured guild with one PUT", async () => {
    discord = await FakeDiscord.start();
    const run = io({ DISCORD_TOKEN: discord.token, DISCORD_API_URL: discord.apiUrl, DISCORD_GUILD_ID: discord.guildId, FRIEND_BACKEND: "local", FRIEND_DB_PATH: ":memory:" });
    expect(await main(["register"], run.io)).toBe(0);
    expect(run.out).toEqual([`Registered ${COMMANDS.length} slash commands in guild ${discord.guildId}.`]);
    expect(COMMANDS.map((c) => c.data.name).sort()).toEqual(["forget", "model", "persona", "reset", "scene", "status"]);
    const puts = discord.rest.filter((c) => c.method === "PUT");
    expect(puts).toHaveLength(1);
    expect(puts[0]!.path).toBe(`/applications/${discord.applicationId}/guilds/${discord.guildId}/commands`);
  });

  it("refuses bad configuration with the config message", async () => {
    const run = io({ FRIEND_BACKEND: "local" });
    expect(await main(["register"], run.io)).toBe(1);
    expect(run.err.join("\n")).toMatch(/DISCORD_TOKEN: is required/);
  });
});
