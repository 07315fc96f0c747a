/** Model sources (LLAMA_MODEL_PATH, LLAMA_LORA_PATH): parsing, safe names, and the config's rules and defaults. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LOCAL_DEFAULTS } from "../../src/config/local-defaults.ts";
import { describeModelSource, modelSourceName, parseModelSource, withoutUrlSecrets } from "../../src/core/model-source.ts";
import { loadConfig } from "../../src/config/env.ts";
import { ConfigError } from "../../src/config/errors.ts";

describe("parseModelSource", () => {
  it.each([
    ["models/llama-2-7b.Q4_K_M.gguf", { kind: "file", path: "models/llama-2-7b.Q4_K_M.gguf" }],
    ["/srv/models/my model.gguf", { kind: "file", path: "/srv/models/my model.gguf" }],
    ["C:\\models\\model.gguf", { kind: "file", path: "C:\\models\\model.gguf" }],
    ["hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M", { kind: "huggingface", uri: "hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M" }],
    ["hf:TheBloke/Llama-2-7B-GGUF", { kind: "huggingface", uri: "hf:TheBloke/Llama-2-7B-GGUF" }],
    ["hf:user/repo/file.gguf", { kind: "huggingface", uri: "hf:user/repo/file.gguf" }],
    ["hf:user/repo/sub/dir/file.gguf#dev", { kind: "huggingface", uri: "hf:user/repo/sub/dir/file.gguf#dev" }],
    ["huggingface:user/repo:Q8_0", { kind: "huggingface", uri: "huggingface:user/repo:Q8_0" }],
    ["https://example.com/models/tiny.gguf", { kind: "url", url: "https://example.com/models/tiny.gguf", fileName: "tiny.gguf" }],
    ["http://127.0.0.1:8080/a%20b.gguf?sig=1", { kind: "url", url: "http://127.0.0.1:8080/a%20b.gguf?sig=1", fileName: "a_b.gguf" }],
    ["https://host/x/..%2F..%2Fetc%2Fpasswd", { kind: "url", url: "https://host/x/..%2F..%2Fetc%2Fpasswd", fileName: ".._.._etc_passwd" }],
  ])("%s", (value, expected) => {
    expect(parseModelSource(value)).toEqual(expected);
  });

  it.each([
    ["hf:user", /not a Hugging Face URI/],
    ["hf:/repo", /not a Hugging Face URI/],
    ["hf:user/:Q4_K_M", /not a Hugging Face URI/],
    ["hf:user/repo/", /not a Hugging Face URI/],
    ["ftp://host/model.gguf", /ftp:\/\/ is not supported/],
    ["s3://bucket/model.gguf", /s3:\/\/ is not supported/],
    ["https://host/", /does not end in a file name/],
    ["https://host/..", /does not end in a file name/],
    ["http://[::1", /not a valid URL/],
  ])("refuses %s", (value, message) => {
    expect(() => parseModelSource(value)).toThrow(message);
  });

  it("any text is a source or a clear Error, never anything else (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.webUrl({ withQueryParameters: true, withFragments: true }), fc.string().map((s) => `hf:${s}`)), (value) => {
        try {
          const source = parseModelSource(value);
          expect(["file", "huggingface", "url"]).toContain(source.kind);
          if (source.kind === "url") expect(source.fileName).toMatch(/^[\w.+-]+$/);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          expect((err as Error).message.length).toBeGreaterThan(0);
        }
      }),
    );
  });
});

describe("names that are safe to show and log", () => {
  it("a URL loses its query string and credentials; the rest is shown as given", () => {
    const url = parseModelSource("https://user:pass@host.example/m/model.gguf?X-Signature=secret#frag");
    expect(describeModelSource(url)).toBe("https://host.example/m/model.gguf");
    expect(modelSourceName(url)).toBe("model.gguf");
    expect(modelSourceName(parseModelSource("models/dir/llama.gguf"))).toBe("llama.gguf");
    expect(describeModelSource(parseModelSource("models/dir/llama.gguf"))).toBe("models/dir/llama.gguf");
    expect(modelSourceName(parseModelSource("hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M"))).toBe("hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M");
  });

  it("no query secret of any URL survives in a name, a description, or an error text quoting it (property)", () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9]{12,24}$/);
    fc.assert(
      fc.property(fc.webUrl({ withQueryParameters: false, withFragments: false }), secret, (base, token) => {
        const value = `${base.replace(/\/?$/, "/")}model.gguf?token=SECRET${token}`;
        const source = parseModelSource(value);
        expect(describeModelSource(source)).not.toContain(token);
        expect(modelSourceName(source)).not.toContain(token);
        expect(withoutUrlSecrets(`Url: ${value}, Status code: 404`)).not.toContain(token);
      }),
    );
  });
});

describe("the config's model settings", () => {
  const base = { DISCORD_TOKEN: "t", FRIEND_BACKEND: "local" };

  /** Runs `check` with the working directory in a fresh temp folder (relative defaults are looked up there). */
  function inFreshDirectory(check: (dir: string) => void): void {
    const dir = mkdtempSync(join(tmpdir(), "friend-cwd-"));
    const previous = process.cwd();
    process.chdir(dir);
    try {
      check(dir);
    } finally {
      process.chdir(previous);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("with no LLAMA_MODEL_PATH the model is Llama-2-7B Q4_K_M from Hugging Face, unless the old default file is in place", () => {
    inFreshDirectory((dir) => {
      expect(loadConfig(base).local.modelPath).toBe("hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M");
      mkdirSync(join(dir, "models"));
      writeFileSync(join(dir, LOCAL_DEFAULTS.legacyModelPath), "");
      expect(loadConfig(base).local.modelPath).toBe("models/llama-2-7b.Q4_K_M.gguf");
      expect(loadConfig({ ...base, LLAMA_MODEL_PATH: "" }).local.modelPath).toBe("models/llama-2-7b.Q4_K_M.gguf");
    });
  });

  it("takes paths, hf: URIs and URLs, the load timeout and HF_TOKEN", () => {
    const config = loadConfig({
      ...base,
      LLAMA_MODEL_PATH: "https://example.com/tiny.gguf",
      LLAMA_LORA_PATH: "hf:me/friends-lora/friends.gguf",
      LLAMA_LOAD_TIMEOUT_S: "45",
      HF_TOKEN: "hf_abc",
    });
    expect(config.local).toMatchObject({ modelPath: "https://example.com/tiny.gguf", loraPath: "hf:me/friends-lora/friends.gguf", loadTimeoutMs: 45_000, huggingFaceToken: "hf_abc" });
    expect(loadConfig(base).local.loadTimeoutMs).toBe(300_000);
    expect(loadConfig({ ...base, LLAMA_LORA_PATH: "" }).local.loraPath).toBeUndefined();
  });

  it("names a malformed source and a bad timeout at start-up", () => {
    let problems: string[] = [];
    try {
      loadConfig({ ...base, LLAMA_MODEL_PATH: "ftp://host/m.gguf", LLAMA_LORA_PATH: "hf:only-a-user", LLAMA_LOAD_TIMEOUT_S: "0" });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems;
    }
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^LLAMA_MODEL_PATH: must be a GGUF file path, a Hugging Face URI \(hf:user\/repo:Q4_K_M\) or an http\(s\) URL: ftp:\/\/ is not supported/),
        expect.stringMatching(/^LLAMA_LORA_PATH: must be .*"hf:only-a-user" is not a Hugging Face URI/),
        expect.stringMatching(/^LLAMA_LOAD_TIMEOUT_S: must be at least 1/),
      ]),
    );
  });
});

describe("withoutUrlSecrets", () => {
  it.each([
    ["Url: http://h.example/m.gguf?token=abc, Status code: 404", "Url: http://h.example/m.gguf, Status code: 404"],
    ["fetch https://user:pw@h.example/a/b.gguf#x failed", "fetch https://h.example/a/b.gguf failed"],
    ["see http://h/x?a=1.", "see http://h/x."],
    ["no url here", "no url here"],
  ])("%s", (text, expected) => {
    expect(withoutUrlSecrets(text)).toBe(expected);
  });
});
