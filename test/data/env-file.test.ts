import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readEnvFile, setEnvValue, updateEnvFile } from "../../src/commandline/env-file.ts";
import { tempFolder } from "./helpers/fixtures.ts";

const MODEL = "ft:gpt-3.5-turbo-0125:org:friends:abc123";

describe("setEnvValue", () => {
  it.each([
    ["an empty file", "", `OPENAI_MODEL=${MODEL}\n`],
    ["a file without the key", "DISCORD_TOKEN=abc\n", `DISCORD_TOKEN=abc\nOPENAI_MODEL=${MODEL}\n`],
    ["a file without a final newline", "DISCORD_TOKEN=abc", `DISCORD_TOKEN=abc\nOPENAI_MODEL=${MODEL}\n`],
    ["the key in the middle", "A=1\nOPENAI_MODEL=gpt-4o-mini\nB=2\n", `A=1\nOPENAI_MODEL=${MODEL}\nB=2\n`],
    ["an exported key", "export OPENAI_MODEL=old\n", `export OPENAI_MODEL=${MODEL}\n`],
    ["spaces around =", "OPENAI_MODEL = old\n", `OPENAI_MODEL=${MODEL}\n`],
    ["the key twice", "OPENAI_MODEL=a\nX=1\nOPENAI_MODEL=b\n", `OPENAI_MODEL=${MODEL}\nX=1\nOPENAI_MODEL=${MODEL}\n`],
    ["a longer key with the same start", "OPENAI_MODEL_FALLBACK=x\n", `OPENAI_MODEL_FALLBACK=x\nOPENAI_MODEL=${MODEL}\n`],
    ["the key in a comment", "# OPENAI_MODEL=old\n", `# OPENAI_MODEL=old\nOPENAI_MODEL=${MODEL}\n`],
    ["CRLF endings", "A=1\r\nOPENAI_MODEL=old\r\nB=2\r\n", `A=1\r\nOPENAI_MODEL=${MODEL}\r\nB=2\r\n`],
    ["CRLF endings, key missing", "A=1\r\n", `A=1\r\nOPENAI_MODEL=${MODEL}\r\n`],
  ])("%s", (_case, before, after) => {
    expect(setEnvValue(before, "OPENAI_MODEL", MODEL)).toBe(after);
  });

  it("leaves every other line byte for byte", () => {
    const before = "# Friend\nDISCORD_TOKEN='quoted # not a comment'\n\n  INDENTED=1\nOPENAI_MODEL=old\nLAST=x";
    const after = setEnvValue(before, "OPENAI_MODEL", MODEL);
    expect(after.split("\n").filter((l) => !l.startsWith("OPENAI_MODEL"))).toEqual(before.split("\n").filter((l) => !l.startsWith("OPENAI_MODEL")));
  });
});

describe("updateEnvFile and readEnvFile", () => {
  it("creates the file when missing and dotenv reads the value back", () => {
    const dir = tempFolder();
    try {
      const path = join(dir.path, ".env");
      updateEnvFile(path, "OPENAI_MODEL", MODEL);
      expect(readEnvFile(path)).toEqual({ OPENAI_MODEL: MODEL });
      writeFileSync(path, `OPENAI_API_KEY=sk-test\n${readFileSync(path, "utf8")}`);
      updateEnvFile(path, "OPENAI_MODEL", "ft:newer");
      expect(readEnvFile(path)).toEqual({ OPENAI_API_KEY: "sk-test", OPENAI_MODEL: "ft:newer" });
    } finally {
      dir.remove();
    }
  });

  it("a missing file reads as empty", () => {
    expect(readEnvFile("/no/such/.env")).toEqual({});
  });
});
