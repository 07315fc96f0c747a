import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/config/errors.ts";
import { loadConfig } from "../../src/config/env.ts";

const good = { DISCORD_TOKEN: "tok", OPENAI_API_KEY: "sk-test", OPENAI_MODEL: "ft:gpt-3.5-turbo-0125:org::abc" };

function problems(env: Record<string, string>, settingsPath?: string): string[] {
  try {
    loadConfig(env, settingsPath);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    const config = loadConfig(good);
    expect(config.discord.apiUrl).toBe("https://discord.com/api");
    expect(config.defaultBackend).toBe("openai");
    expect(config.dbPath).toBe("data/friend.db");
    expect(config.logLevel).toBe("info");
    expect(config.local.contextSize).toBe(4096);
    expect(config.local.sequences).toBe(4);
    expect(config.local.gpuLayers).toBe("auto");
    expect(config.discord.allowDms).toBe(true);
    expect(config.http).toBeUndefined();
    expect(config.retentionDays).toBe(30);
    expect(config.settings.persona.name).toBe("Friend");
  });

  it.each([
    ["0", /FRIEND_RETENTION_DAYS: must be at least 1/],
    ["1.5", /FRIEND_RETENTION_DAYS: must be a whole number/],
    ["forever", /FRIEND_RETENTION_DAYS: must be a number/],
    ["36501", /FRIEND_RETENTION_DAYS: must be at most 36500/],
  ])("refuses FRIEND_RETENTION_DAYS=%s", (value, message) => {
    expect(problems({ ...good, FRIEND_RETENTION_DAYS: value }).join("\n")).toMatch(message);
  });

  it("saved channel states: 2048 MiB next to the database by default, none for a database in memory", () => {
    const config = loadConfig(good);
    expect(config.local.stateCacheMb).toBe(2048);
    expect(config.local.stateSaveTurns).toBe(0);
    expect(config.local.stateDir).toBe(join("data", "llama-state"));
    expect(config.local.kvCacheType).toBe("f16");
    expect(loadConfig({ ...good, FRIEND_DB_PATH: "/srv/friend/db.sqlite" }).local.stateDir).toBe("/srv/friend/llama-state");
    expect(loadConfig({ ...good, FRIEND_DB_PATH: ":memory:" }).local.stateDir).toBeUndefined();
    expect(loadConfig({ ...good, FRIEND_DB_PATH: ":memory:", LLAMA_STATE_DIR: "/tmp/states" }).local.stateDir).toBe("/tmp/states");
    expect(loadConfig({ ...good, LLAMA_STATE_CACHE_MB: "0", LLAMA_KV_CACHE_TYPE: "q8_0" }).local).toMatchObject({ stateCacheMb: 0, kvCacheType: "q8_0" });
    expect(problems({ ...good, LLAMA_KV_CACHE_TYPE: "q4_0", LLAMA_STATE_CACHE_MB: "-1" }).join("\n")).toMatch(/LLAMA_KV_CACHE_TYPE: must be one of f16, q8_0[\s\S]*LLAMA_STATE_CACHE_MB: must be at least 0|LLAMA_STATE_CACHE_MB: must be at least 0[\s\S]*LLAMA_KV_CACHE_TYPE: must be one of f16, q8_0/);
  });

  it("the config and LocalBackend refuse the same out-of-range values (one source of bounds)", async () => {
    const { LocalBackend } = await import("../../src/backends/local.ts");
    const { LOCAL_BOUNDS } = await import("../../src/config/local-defaults.ts");
    const cases = [
      ["LLAMA_CONTEXT_SIZE", "contextSize", LOCAL_BOUNDS.contextSize],
      ["LLAMA_SEQUENCES", "sequences", LOCAL_BOUNDS.sequences],
      ["LLAMA_THREADS", "threads", LOCAL_BOUNDS.threads],
      ["LLAMA_STATE_CACHE_MB", "stateCacheMb", LOCAL_BOUNDS.stateCacheMb],
      ["LLAMA_STATE_SAVE_TURNS", "stateSaveTurns", LOCAL_BOUNDS.stateSaveTurns],
    ] as const;
    for (const [variable, option, bounds] of cases) {
      for (const value of [bounds.min - 1, bounds.max + 1]) {
        expect(problems({ ...good, [variable]: String(value) }).join()).toContain(variable);
        expect(() => new LocalBackend({ modelPath: "m.gguf", [option]: value })).toThrow(option);
      }
      for (const value of [bounds.min, bounds.max]) {
        expect(loadConfig({ ...good, [variable]: String(value) }).local[option]).toBe(value);
        expect(() => new LocalBackend({ modelPath: "m.gguf", [option]: value })).not.toThrow();
      }
    }
  });

  it("parses lists, numbers and flags", () => {
    const config = loadConfig({
      ...good,
      FRIEND_CHANNELS: " 123456789012345678, 223456789012345678 ,",
      LLAMA_GPU_LAYERS: "33",
      LLAMA_THREADS: "2",
      FRIEND_ALLOW_DMS: "off",
      FRIEND_HTTP_PORT: "9090",
      DISCORD_API_URL: "http://127.0.0.1:1234/api/",
    });
    expect([...config.discord.channels]).toEqual(["123456789012345678", "223456789012345678"]);
    expect(config.local.gpuLayers).toBe(33);
    expect(config.local.threads).toBe(2);
    expect(config.discord.allowDms).toBe(false);
    expect(config.http).toEqual({ port: 9090, host: "127.0.0.1" });
    expect(config.discord.apiUrl).toBe("http://127.0.0.1:1234/api");
  });

  it("names every wrong variable at once", () => {
    const found = problems({ FRIEND_BACKEND: "gpt", LLAMA_THREADS: "many", LLAMA_SEQUENCES: "0", LLAMA_CONTEXT_SIZE: "1.5", FRIEND_CHANNELS: "general", DISCORD_API_URL: "nope" });
    expect(found.join("\n")).toMatch(/LLAMA_SEQUENCES: must be at least 1/);
    expect(found.join("\n")).toMatch(/LLAMA_CONTEXT_SIZE: must be a whole number/);
    expect(found.join("\n")).toMatch(/DISCORD_TOKEN: is required/);
    expect(found.join("\n")).toMatch(/FRIEND_BACKEND: must be one of openai, local/);
    expect(found.join("\n")).toMatch(/LLAMA_THREADS: must be a number/);
    expect(found.join("\n")).toMatch(/FRIEND_CHANNELS\.0: must be a Discord id/);
    expect(found.join("\n")).toMatch(/DISCORD_API_URL: must be a URL/);
  });

  it("requires the OpenAI model and key only for the openai default", () => {
    expect(problems({ DISCORD_TOKEN: "t" })).toEqual([
      expect.stringMatching(/^OPENAI_MODEL: is required when FRIEND_BACKEND=openai/),
      expect.stringMatching(/^OPENAI_API_KEY: is required/),
    ]);
    expect(loadConfig({ DISCORD_TOKEN: "t", FRIEND_BACKEND: "local" }).openai.model).toBeUndefined();
  });

  it("reports a broken settings file with its path", () => {
    const dir = mkdtempSync(join(tmpdir(), "friend-config-"));
    const bad = join(dir, "friend.json");
    writeFileSync(bad, JSON.stringify({ persona: { name: "lowercase" } }));
    const found = problems(good, bad);
    expect(found.some((p) => p.startsWith(`${bad}: persona.name: must be one capitalised word`))).toBe(true);
    expect(found.some((p) => p.includes("window"))).toBe(true);
    writeFileSync(bad, "{not json");
    expect(problems(good, bad)[0]).toMatch(/cannot read settings/);
  });

  it("never puts a secret in its messages", () => {
    const found = problems({ DISCORD_TOKEN: "", OPENAI_API_KEY: "sk-secret-value", FRIEND_BACKEND: "bad" });
    expect(found.join("\n")).not.toContain("sk-secret-value");
  });
});
