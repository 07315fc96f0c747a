import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkStats, dialogueRuns, packChunks, splitLongLine } from "../../src/data/chunks/dialogue-chunks.ts";
import { approximateTokenCounter, loadModelTokenCounter, type TokenCounter } from "../../src/data/chunks/token-counter.ts";
import type { Scene } from "../../src/data/transcript.ts";
import { tempFolder } from "./helpers/fixtures.ts";
import { writeVocabOnlyGguf } from "./helpers/gguf-vocab.ts";

const scene = (...lines: [string, string][]): Scene => ({ episode: "e", lines: lines.map(([s, text]) => ({ speakers: s.split("+"), text })) });

/** One token per space-separated word, so expected chunks are easy to work out by hand. */
const wordCounter: TokenCounter = {
  exact: true,
  source: "words",
  count: (text) => text.split(/\s+/).filter(Boolean).length,
  dispose: async () => {},
};

describe("dialogueRuns", () => {
  it("keeps runs of main-character lines as `Name: line`", () => {
    expect(dialogueRuns([scene(["Ross", "Hi."], ["Rachel", "Hey."])])).toEqual([["Ross: Hi.", "Rachel: Hey."]]);
  });

  it("a guest's line ends a run and is left out", () => {
    expect(dialogueRuns([scene(["Ross", "Hi."], ["Gunther", "Coffee?"], ["Rachel", "Hey."])])).toEqual([["Ross: Hi."], ["Rachel: Hey."]]);
  });

  it("a group line ends a run", () => {
    expect(dialogueRuns([scene(["Ross", "Hi."], ["Monica+Phoebe", "Hey!"], ["Joey", "Yo."])])).toEqual([["Ross: Hi."], ["Joey: Yo."]]);
  });

  it("a scene change ends a run", () => {
    expect(dialogueRuns([scene(["Ross", "Bye."]), scene(["Joey", "Later."])])).toEqual([["Ross: Bye."], ["Joey: Later."]]);
  });

  it("a scene of guests makes no run", () => {
    expect(dialogueRuns([scene(["Gunther", "Hm."], ["Janice", "Oh. My. God."])])).toEqual([]);
  });
});

describe("packChunks", () => {
  it("fills chunks up to the limit, cutting between lines", () => {
    // Each line is 3 words; with "\n" joins a 7-word limit holds two lines.
    const run = ["Ross: one two", "Joey: three four", "Monica: five six", "Phoebe: seven eight", "Chandler: nine ten"];
    expect(packChunks([run], wordCounter, 7)).toEqual(["Ross: one two\nJoey: three four", "Monica: five six\nPhoebe: seven eight", "Chandler: nine ten"]);
  });

  it("never joins two runs in one chunk", () => {
    expect(packChunks([["Ross: a"], ["Joey: b"]], wordCounter, 100)).toEqual(["Ross: a", "Joey: b"]);
  });

  it("cuts a line longer than a chunk between words", () => {
    expect(packChunks([["Ross: " + "la ".repeat(9).trim(), "Joey: what?"]], wordCounter, 4)).toEqual([
      "Ross: la la la",
      "la la la la",
      "la la\nJoey: what?",
    ]);
  });

  it("keeps every chunk within the limit and loses no words", () => {
    const run = Array.from({ length: 200 }, (_, i) => `Joey: ${"word ".repeat(1 + (i % 13)).trim()} ${i}`);
    const chunks = packChunks([run], wordCounter, 16);
    expect(Math.max(...chunks.map((c) => wordCounter.count(c)))).toBeLessThanOrEqual(16);
    expect(chunks.join("\n").split(/\s+/)).toEqual(run.join("\n").split(/\s+/));
  });

  it("a single word longer than a chunk stays whole and is counted as over the limit", () => {
    const counter: TokenCounter = { ...wordCounter, count: (t) => Math.ceil(t.length / 2) };
    const chunks = packChunks([["Joey: Supercalifragilistic"]], counter, 4);
    expect(chunks).toEqual(["Joey:", "Supercalifragilistic"]);
    expect(chunkStats([["Joey: Supercalifragilistic"]], chunks, counter, 4).overLimit).toBe(1);
  });
});

describe("splitLongLine", () => {
  it("returns a line that fits unchanged", () => {
    expect(splitLongLine("Ross: hi there", wordCounter, 3)).toEqual(["Ross: hi there"]);
  });
});

describe("chunkStats", () => {
  it("reports chunks, lines, runs and token sizes", () => {
    const runs = [["Ross: a b", "Joey: c"], ["Monica: d e f"]];
    const chunks = packChunks(runs, wordCounter, 100);
    expect(chunkStats(runs, chunks, wordCounter, 100)).toEqual({ chunks: 2, lines: 3, runs: 2, maxTokens: 5, meanTokens: 5, overLimit: 0 });
  });
});

describe("token counters", () => {
  it("the approximation says it is one and counts about 3.5 characters a token", () => {
    expect(approximateTokenCounter.exact).toBe(false);
    expect(approximateTokenCounter.source).toMatch(/^APPROXIMATE/);
    expect(approximateTokenCounter.count("x".repeat(35))).toBe(10);
    expect(approximateTokenCounter.count("")).toBe(0);
  });

  describe("the base model's own tokenizer (a vocabulary-only GGUF through node-llama-cpp)", () => {
    const dir = tempFolder();
    const modelPath = join(dir.path, "vocab.gguf");
    let counter: TokenCounter;
    beforeAll(async () => {
      writeVocabOnlyGguf(modelPath, ["▁Ross", ":", "▁Hi", "!"]);
      counter = await loadModelTokenCounter(modelPath);
    });
    afterAll(async () => {
      await counter?.dispose();
      dir.remove();
    });

    it("counts real tokens and says where they came from", () => {
      expect(counter.exact).toBe(true);
      expect(counter.source).toBe(`the tokenizer of ${modelPath}`);
      // ▁Ross : ▁Hi !  — pieces in the vocabulary are one token each.
      expect(counter.count("Ross: Hi!")).toBe(4);
      // No pieces for these letters: one byte token each, plus the leading ▁.
      expect(counter.count("zzz")).toBe(4);
    });

    it("packs chunks by the real count of the joined text, not a sum of lines", () => {
      // After "\n" there is no ▁ before "Ross", so the second line costs 7 tokens, not 4: 4 + 1 + 7 = 12.
      expect(counter.count("Ross: Hi!\nRoss: Hi!")).toBe(12);
      const run = ["Ross: Hi!", "Ross: Hi!", "Ross: Hi!"];
      expect(packChunks([run], counter, 12)).toEqual(["Ross: Hi!\nRoss: Hi!", "Ross: Hi!"]);
      expect(packChunks([run], counter, 11)).toEqual(run);
    });
  });

  it("a missing tokenizer model is a usage error naming it", async () => {
    await expect(loadModelTokenCounter("/no/such/model.gguf")).rejects.toThrowError("tokenizer model /no/such/model.gguf does not exist; give the base model's .gguf file");
  });

  it("a file that is not GGUF is a usage error naming it", async () => {
    const dir = tempFolder();
    try {
      const path = join(dir.path, "fake.gguf");
      (await import("node:fs")).writeFileSync(path, "not a model");
      await expect(loadModelTokenCounter(path)).rejects.toThrowError(/^cannot load the tokenizer from .*fake\.gguf .*; is it a GGUF model\?$/);
    } finally {
      dir.remove();
    }
  });
});
