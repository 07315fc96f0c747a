import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { helpText, main } from "../../src/cli.ts";
import { loadSettings, systemPromptFor } from "../../src/config/settings.ts";
import { checkTrainingExample, loadExampleTokenizer } from "../../src/data/sft/training-example.ts";
import { captureIo } from "./helpers/capture-io.ts";
import { fixture, tempFolder } from "./helpers/fixtures.ts";
import { writeVocabOnlyGguf } from "./helpers/gguf-vocab.ts";
import { syntheticKaggleTranscript } from "./helpers/synthetic-transcript.ts";

const BIN = fileURLToPath(new URL("../../bin/friend.js", import.meta.url));
const dir = tempFolder();
const transcript = join(dir.path, "Friends_Transcript.txt");

beforeAll(() => writeFileSync(transcript, syntheticKaggleTranscript({ lines: 3000, seed: 5 })));
afterAll(() => dir.remove());

async function friend(argv: string[], env: Record<string, string> = {}) {
  const captured = captureIo({ cwd: dir.path, env });
  const code = await main(argv, captured.io);
  return { code, out: captured.out, err: captured.err };
}

const readJsonl = (name: string) =>
  readFileSync(join(dir.path, name), "utf8")
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as unknown);

describe("friend data sft", () => {
  it("writes --count valid examples under the persona's prompt and prints the summary", async () => {
    const { code, out, err } = await friend(["data", "sft", "--input", "Friends_Transcript.txt", "--out", "train.jsonl", "--count", "40"]);
    expect(err).toEqual([]);
    expect(code).toBe(0);
    const examples = readJsonl("train.jsonl") as { messages: { role: string; content: string }[] }[];
    expect(examples).toHaveLength(40);
    const { persona } = loadSettings();
    const tokenizer = await loadExampleTokenizer("gpt-3.5-turbo-0125");
    for (const example of examples) {
      expect(example.messages.map((m) => m.role)).toEqual(["system", "user", "assistant"]);
      expect(example.messages[0]!.content).toBe(systemPromptFor(persona, persona.trainingPartner));
      expect(example.messages[2]!.content).not.toMatch(/^(Monica|Rachel|Phoebe|Joey|Chandler|Ross|MNCA|CHAN):/);
      expect(checkTrainingExample(example, tokenizer).ok).toBe(true);
    }
    expect(out[0]).toMatch(/^read \d+ dialogue lines in \d+ scenes of \d+ episodes from Friends_Transcript\.txt$/);
    expect(out[1]).toMatch(/^skipped: episode title: \d+, credits: \d+, scene heading: \d+, stage direction: \d+, end marker: \d+/);
    expect(out).toContain("examples: 40");
    expect(out).toContain("epochs: 3 (OpenAI's default for 40 examples)");
    expect(out.find((l) => l.startsWith("tokens: "))).toMatch(/^tokens: [\d,]+ \(cl100k_base, as gpt-3\.5-turbo-0125 counts them\)$/);
    const tokens = Number(out.find((l) => l.startsWith("tokens: "))!.replace(/^tokens: ([\d,]+).*$/, "$1").replaceAll(",", ""));
    expect(out).toContain(`estimated training tokens: ${(tokens * 3).toLocaleString("en-US")} (each example up to 16,385 tokens, × 3 epochs)`);
  });

  it("the same seed writes the same file; another seed, another file", async () => {
    await friend(["data", "sft", "--input", "Friends_Transcript.txt", "--out", "a.jsonl", "--seed", "9"]);
    await friend(["data", "sft", "--input", "Friends_Transcript.txt", "--out", "b.jsonl", "--seed", "9"]);
    await friend(["data", "sft", "--input", "Friends_Transcript.txt", "--out", "c.jsonl", "--seed", "10"]);
    const read = (name: string) => readFileSync(join(dir.path, name), "utf8");
    expect(read("a.jsonl")).toBe(read("b.jsonl"));
    expect(read("a.jsonl")).not.toBe(read("c.jsonl"));
    expect(readJsonl("a.jsonl")).toHaveLength(50);
  });

  it("reads every format through --format auto", async () => {
    for (const input of ["kaggle-sample.txt", "episodes", "emorynlp-season.json", "lines.csv"]) {
      const { code, err } = await friend(["data", "sft", "--input", fixture(input), "--out", "small.jsonl"]);
      expect(code, input).toBe(0);
      expect(err.at(-1), input).toBe("warning: OpenAI needs at least 10 examples to fine-tune; raise --count or loosen the filters");
      expect(readJsonl("small.jsonl").length, input).toBeGreaterThan(0);
    }
  });

  it("--reply-as keeps only that character's replies", async () => {
    await friend(["data", "sft", "--input", fixture("kaggle-sample.txt"), "--out", "joey.jsonl", "--reply-as", "joey"]);
    const replies = (readJsonl("joey.jsonl") as { messages: { content: string }[] }[]).map((e) => e.messages[2]!.content);
    expect(replies).toEqual(["Do you think she counts them?", "How much did he offer?", "What salad?"]);
  });

  it.each([
    [["data", "sft", "--out", "x.jsonl"], "friend data sft: --input is required"],
    [["data", "sft", "--input", "Friends_Transcript.txt"], "friend data sft: --out is required"],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--count", "many"], 'friend data sft: --count must be a whole number from 1 to 1000000, not "many"'],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--seed=-1"], 'friend data sft: --seed must be a whole number from 0 to 4294967295, not "-1"'],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--seed", "-1"], 'friend data sft: option --seed needs a value; write --seed=-… for one starting with "-"'],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--format", "pdf"], 'friend data sft: --format must be auto or one of kaggle, episodes, emorynlp, csv, not "pdf"'],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--characters", "Joey,Gunther"], 'friend data sft: --characters: "Gunther" is not a main character (Monica, Rachel, Phoebe, Joey, Chandler, Ross)'],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--min-chars", "50", "--max-chars", "10"], "friend data sft: --min-chars is larger than --max-chars"],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--count"], "friend data sft: option --count needs a value"],
    [["data", "sft", "--nope"], "friend data sft: unknown option --nope"],
    [["data", "sft", "extra"], 'friend data sft: unexpected argument "extra"'],
    [["data"], "friend data: give a subcommand: friend data sft, friend data chunks, friend data eval"],
    [["dance"], 'friend: unknown command "dance"; run friend --help'],
  ])("%j exits 2 with one line", async (argv, message) => {
    const { code, err } = await friend(argv);
    expect(err).toEqual([message]);
    expect(code).toBe(2);
  });

  it.each([
    [["data", "sft", "--input", "missing.txt", "--out", "x.jsonl"], /^friend data sft: .*missing\.txt: cannot read \(no such file or folder\)$/],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "no/such/folder/x.jsonl"], /^friend data sft: cannot write no\/such\/folder\/x\.jsonl \(.*\)$/],
    [["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--characters", "Joey"], /^friend data sft: no pairs of consecutive lines by two different main characters; check --characters/],
  ])("%j exits 1 with one line", async (argv, message) => {
    const { code, err } = await friend(argv);
    expect(err).toEqual([expect.stringMatching(message)]);
    expect(code).toBe(1);
  });

  it("a bad settings file is a usage error naming the problem", async () => {
    writeFileSync(join(dir.path, "bad.json"), "{}");
    const { code, err } = await friend(["data", "sft", "--input", "Friends_Transcript.txt", "--out", "x.jsonl", "--settings", "bad.json"]);
    expect(code).toBe(2);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^friend data sft: cannot read the persona: .*bad\.json: persona: /);
  });
});

describe("friend data chunks", () => {
  it("writes {text} chunks and marks approximate token counts as approximate", async () => {
    const { code, out, err } = await friend(["data", "chunks", "--input", "Friends_Transcript.txt", "--out", "chunks.jsonl"]);
    expect(err).toEqual([]);
    expect(code).toBe(0);
    const chunks = readJsonl("chunks.jsonl") as { text: string }[];
    expect(chunks.length).toBeGreaterThan(10);
    for (const chunk of chunks) {
      expect(Object.keys(chunk)).toEqual(["text"]);
      for (const line of chunk.text.split("\n")) expect(line).toMatch(/^(Monica|Rachel|Phoebe|Joey|Chandler|Ross): \S/);
      expect(Math.ceil(chunk.text.length / 3.5)).toBeLessThanOrEqual(128);
    }
    expect(out).toContain("token counts: APPROXIMATE (3.5 characters per token; give --tokenizer-model or LLAMA_MODEL_PATH for exact counts)");
    expect(out.find((l) => l.startsWith("tokens per chunk"))).toMatch(/^tokens per chunk: max ~\d+, mean ~\d+ \(limit 128\)$/);
  });

  it("counts with the base model's tokenizer from --tokenizer-model", async () => {
    const model = join(dir.path, "vocab.gguf");
    writeVocabOnlyGguf(model, ["▁Joey", "▁Ross", ":"]);
    const byOption = await friend(["data", "chunks", "--input", fixture("kaggle-sample.txt"), "--out", "exact.jsonl", "--chunk-tokens", "32", "--tokenizer-model", "vocab.gguf"]);
    expect(byOption.err).toEqual([]);
    expect(byOption.out).toContain(`token counts: the tokenizer of ${model}`);
    expect(byOption.out.find((l) => l.startsWith("tokens per chunk"))).toMatch(/^tokens per chunk: max \d+, mean \d+ \(limit 32\)$/);
    expect(readJsonl("exact.jsonl").length).toBeGreaterThan(1);
  });

  it("takes the tokenizer model from LLAMA_MODEL_PATH, in the environment or .env", async () => {
    // A missing file proves which path was read without loading llama.cpp again.
    const fromEnv = await friend(["data", "chunks", "--input", fixture("kaggle-sample.txt"), "--out", "c.jsonl"], { LLAMA_MODEL_PATH: "env.gguf" });
    expect(fromEnv.err).toEqual([`friend data chunks: tokenizer model ${join(dir.path, "env.gguf")} does not exist; give the base model's .gguf file`]);
    writeFileSync(join(dir.path, ".env"), "LLAMA_MODEL_PATH=dotenv.gguf\n");
    try {
      const fromDotenv = await friend(["data", "chunks", "--input", fixture("kaggle-sample.txt"), "--out", "c.jsonl"]);
      expect(fromDotenv.err).toEqual([`friend data chunks: tokenizer model ${join(dir.path, "dotenv.gguf")} does not exist; give the base model's .gguf file`]);
    } finally {
      rmSync(join(dir.path, ".env"));
    }
  });

  it("counts approximately, and says why, when LLAMA_MODEL_PATH names a download rather than a file", async () => {
    const run = await friend(["data", "chunks", "--input", fixture("kaggle-sample.txt"), "--out", "c.jsonl"], { LLAMA_MODEL_PATH: "hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M" });
    expect(run.err).toEqual([
      "LLAMA_MODEL_PATH is hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M, not a file: counting tokens approximately. Give --tokenizer-model with the downloaded .gguf (in models/) for exact counts.",
    ]);
    expect(run.out.some((l) => l.startsWith("token counts: APPROXIMATE"))).toBe(true);
  });

  it.each([
    [["data", "chunks", "--input", "Friends_Transcript.txt", "--out", "c.jsonl", "--chunk-tokens", "4"], 'friend data chunks: --chunk-tokens must be a whole number from 8 to 1000000, not "4"'],
    [["data", "chunks", "--input", "Friends_Transcript.txt", "--out", "c.jsonl", "--tokenizer-model", "nope.gguf"], /^friend data chunks: tokenizer model .*nope\.gguf does not exist; give the base model's \.gguf file$/],
  ])("%j exits 2 with one line", async (argv, message) => {
    const { code, err } = await friend(argv);
    expect(err).toEqual([typeof message === "string" ? message : expect.stringMatching(message)]);
    expect(code).toBe(2);
  });
});

describe("friend --help", () => {
  it("lists every subcommand", async () => {
    const { code, out } = await friend(["--help"]);
    expect(code).toBe(0);
    expect(out).toEqual([helpText()]);
    for (const name of ["data sft", "data chunks", "data eval", "eval", "finetune", "finetune status"]) expect(helpText()).toContain(`friend ${name} `);
  });

  it.each(["data sft", "data chunks", "data eval", "eval", "finetune", "finetune status"])("friend %s --help prints its usage", async (command) => {
    const { code, out } = await friend([...command.split(" "), "--help"]);
    expect(code).toBe(0);
    expect(out[0]).toMatch(new RegExp(`^Usage: friend ${command} `));
  });
});

describe("bin/friend.js, as `npx friend` runs it", () => {
  const spawn = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: dir.path, encoding: "utf8", timeout: 20_000 });

  it("unreadable input exits 1 with one line on stderr naming the file, no stack trace", () => {
    const result = spawn(["data", "sft", "--input", "missing.csv", "--out", "x.jsonl"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^friend data sft: .*missing\.csv: cannot read \(no such file or folder\)\n$/);
    expect(result.stdout).toBe("");
  });
});
