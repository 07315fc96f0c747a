import { describe, expect, it } from "vitest";
import { loadSettings, systemPromptFor } from "../../src/config/settings.ts";
import { DEFAULT_PAIR_FILTER, findExchangePairs, type PairFilter } from "../../src/data/sft/pairs.ts";
import { sampleInOrder, seededRandom } from "../../src/data/sft/sampling.ts";
import { defaultEpochs, estimateTrainingCost } from "../../src/data/sft/training-cost.ts";
import {
  checkTrainingExample,
  checkTrainingJsonl,
  countExampleTokens,
  loadExampleTokenizer,
  trainingExampleFor,
} from "../../src/data/sft/training-example.ts";
import type { Scene } from "../../src/data/transcript.ts";

const line = (speaker: string, text: string) => ({ speakers: speaker.split("+"), text });
const scene = (...lines: [string, string][]): Scene => ({ episode: "e1", lines: lines.map(([s, t]) => line(s, t)) });
const pairText = (scenes: Scene[], filter?: PairFilter) => findExchangePairs(scenes, filter).map((p) => `${p.user} → ${p.assistant}`);

describe("findExchangePairs: the pair rules", () => {
  it("pairs consecutive lines by two different main characters, names removed", () => {
    const pairs = findExchangePairs([scene(["Joey", "How you doin'?"], ["Rachel", "Fine, Joey."])]);
    expect(pairs).toEqual([{ episode: "e1", userSpeaker: "Joey", assistantSpeaker: "Rachel", user: "How you doin'?", assistant: "Fine, Joey." }]);
  });

  it.each([
    ["the same speaker twice", [["Ross", "One."], ["Ross", "Two."]]],
    ["a guest as line A", [["Gunther", "Refill?"], ["Rachel", "Sure."]]],
    ["a guest as line B", [["Rachel", "Refill?"], ["Gunther", "Sure."]]],
    ["a two-speaker line", [["Monica+Phoebe", "Hey!"], ["Ross", "Hi."]]],
    ["a group line", [["All", "Hey!"], ["Ross", "Hi."]]],
  ] as [string, [string, string][]][])("makes no pair from %s", (_case, lines) => {
    expect(pairText([scene(...lines)])).toEqual([]);
  });

  it("never pairs across a scene boundary", () => {
    expect(pairText([scene(["Ross", "Bye."]), scene(["Rachel", "Hi."])])).toEqual([]);
  });

  it("pairs may overlap: line B of one pair is line A of the next", () => {
    expect(pairText([scene(["Ross", "A"], ["Rachel", "B"], ["Joey", "C"])], { ...DEFAULT_PAIR_FILTER, minChars: 1 })).toEqual(["A → B", "B → C"]);
  });

  it("a guest line between two main lines breaks the pair", () => {
    expect(pairText([scene(["Ross", "Hi."], ["Gunther", "Coffee?"], ["Rachel", "Hey."])])).toEqual([]);
  });

  it("filters by characters on both sides", () => {
    const s = scene(["Ross", "One."], ["Rachel", "Two."], ["Joey", "Three."], ["Chandler", "Four."]);
    const filter = { ...DEFAULT_PAIR_FILTER, characters: new Set(["Joey", "Chandler"] as const) };
    expect(pairText([s], filter)).toEqual(["Three. → Four."]);
  });

  it("filters who may reply", () => {
    const s = scene(["Ross", "One."], ["Chandler", "Two."], ["Joey", "Three."], ["Chandler", "Four."]);
    expect(pairText([s], { ...DEFAULT_PAIR_FILTER, replyAs: new Set(["Chandler"] as const) })).toEqual(["One. → Two.", "Three. → Four."]);
  });

  it("filters by minimum and maximum length of each line", () => {
    const s = scene(["Ross", "Hi"], ["Rachel", "Hello there"], ["Ross", "A much longer line than the limit"], ["Rachel", "Ok!!"]);
    expect(pairText([s], { ...DEFAULT_PAIR_FILTER, minChars: 3, maxChars: 12 })).toEqual([]);
    expect(pairText([s], { ...DEFAULT_PAIR_FILTER, minChars: 2, maxChars: 12 })).toEqual(["Hi → Hello there"]);
    expect(pairText([s], { ...DEFAULT_PAIR_FILTER, minChars: 4, maxChars: 40 })).toEqual(["Hello there → A much longer line than the limit", "A much longer line than the limit → Ok!!"]);
  });
});

describe("sampleInOrder: determinism under a seed", () => {
  const items = Array.from({ length: 1000 }, (_, i) => i);

  it("the same seed picks the same items", () => {
    expect(sampleInOrder(items, 50, 7)).toEqual(sampleInOrder(items, 50, 7));
  });

  it("a different seed picks different items", () => {
    expect(sampleInOrder(items, 50, 7)).not.toEqual(sampleInOrder(items, 50, 8));
  });

  it("returns distinct items in their original order", () => {
    const sample = sampleInOrder(items, 50, 3);
    expect(new Set(sample).size).toBe(50);
    expect(sample).toEqual([...sample].sort((a, b) => a - b));
  });

  it("returns everything when asked for more than there is", () => {
    expect(sampleInOrder([3, 1, 2], 10, 1)).toEqual([3, 1, 2]);
  });

  it("is mulberry32, so a seed means the same thing on every machine", () => {
    // The published reference implementation, to compare against.
    function mulberry32(a: number) {
      return () => {
        let t = (a += 0x6d2b79f5);
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }
    for (const seed of [0, 1, 42, 2 ** 32 - 1]) {
      const ours = seededRandom(seed);
      const reference = mulberry32(seed);
      for (let i = 0; i < 1000; i++) expect(ours()).toBe(reference());
    }
  });

  it("spreads its picks: every tenth of the input is sampled", () => {
    const sample = sampleInOrder(items, 200, 11);
    const deciles = new Set(sample.map((i) => Math.floor(i / 100)));
    expect(deciles.size).toBe(10);
  });
});

describe("trainingExampleFor", () => {
  it("uses the original experiment's system prompt, addressed to the training partner", () => {
    const { persona } = loadSettings();
    const prompt = systemPromptFor(persona, persona.trainingPartner);
    const example = trainingExampleFor({ episode: "e", userSpeaker: "Ross", assistantSpeaker: "Joey", user: "Hi.", assistant: "Hey." }, prompt);
    expect(example).toEqual({ messages: [{ role: "system", content: prompt }, { role: "user", content: "Hi." }, { role: "assistant", content: "Hey." }] });
    expect(prompt).toContain("close friend Ben");
    expect(prompt).not.toContain("{user}");
  });
});

describe("checkTrainingExample: OpenAI's validation, one bad case per row", async () => {
  const tokenizer = await loadExampleTokenizer("gpt-3.5-turbo-0125");
  const ok = { messages: [{ role: "system", content: "Be Friend." }, { role: "user", content: "Hi." }, { role: "assistant", content: "Hey." }] };
  const withMessage = (message: unknown) => ({ messages: [{ role: "user", content: "Hi." }, message, { role: "assistant", content: "Hey." }] });

  it("accepts a good example and counts its tokens", () => {
    expect(checkTrainingExample(ok, tokenizer)).toEqual({ ok: true, tokens: expect.any(Number) });
  });

  it.each([
    ["a list instead of an object", [ok], "not a JSON object"],
    ["a string", "hello", "not a JSON object"],
    ["no messages", {}, "no `messages` list"],
    ["messages not a list", { messages: "Hi." }, "`messages` is not a list"],
    ["empty messages", { messages: [] }, "`messages` is empty"],
    ["a message that is not an object", withMessage("Hi."), "message 2 is not an object"],
    ["an unknown role", withMessage({ role: "narrator", content: "Meanwhile." }), 'message 2 has role "narrator"; allowed: system, user, assistant, function'],
    ["a missing role", withMessage({ content: "Meanwhile." }), "message 2 has role undefined; allowed: system, user, assistant, function"],
    ["an unknown key", withMessage({ role: "user", content: "Hi.", speaker: "Ross" }), 'message 2 has a key OpenAI does not allow: "speaker"'],
    ["missing content", withMessage({ role: "user" }), "message 2 needs non-empty string content"],
    ["empty content", withMessage({ role: "user", content: "" }), "message 2 needs non-empty string content"],
    ["whitespace content", withMessage({ role: "user", content: "  \n" }), "message 2 needs non-empty string content"],
    ["non-string content", withMessage({ role: "user", content: 42 }), "message 2 needs non-empty string content"],
    ["a bad name", withMessage({ role: "user", content: "Hi.", name: "Ross Geller" }), "message 2 has a name that is not 1-64 of a-z A-Z 0-9 _ -"],
    ["a bad weight", withMessage({ role: "assistant", content: "Hi.", weight: 0.5 }), "message 2 has weight 0.5; it must be 0 or 1"],
    ["no assistant message", { messages: [{ role: "system", content: "Be Friend." }, { role: "user", content: "Hi." }] }, "no assistant message"],
  ])("rejects %s", (_case, value, reason) => {
    expect(checkTrainingExample(value, tokenizer)).toEqual({ ok: false, reason });
  });

  it("accepts name and weight when they are valid", () => {
    expect(checkTrainingExample(withMessage({ role: "assistant", content: "Hi.", name: "Ross_G", weight: 0 }), tokenizer).ok).toBe(true);
  });

  it("rejects an example over the model's token limit", async () => {
    const long = { messages: [{ role: "user", content: "Hi." }, { role: "assistant", content: "la ".repeat(17_000) }] };
    expect(checkTrainingExample(long, tokenizer)).toEqual({ ok: false, reason: expect.stringMatching(/^\d+ tokens, over the 16385-token limit for gpt-3\.5-turbo-0125$/) });
    expect(checkTrainingExample(long, await loadExampleTokenizer("gpt-4o-mini-2024-07-18")).ok).toBe(true);
  });

  it("counts tokens like the OpenAI cookbook: 3 per message, 1 per name, 3 to prime, plus the text", () => {
    const counting = { model: "gpt-3.5-turbo-0125" as const, countText: (text: string) => text.length };
    expect(countExampleTokens([{ role: "user", content: "abcd" }], counting)).toBe(3 + 3 + 4 + 4);
    expect(countExampleTokens([{ role: "user", content: "ab", name: "x" }], counting)).toBe(3 + 3 + 4 + 2 + 1 + 1);
  });

  it("uses cl100k_base for gpt-3.5 and o200k_base for gpt-4o models", async () => {
    // A line the two encodings split differently tells them apart.
    const cl100k = await loadExampleTokenizer("gpt-3.5-turbo-0125");
    const o200k = await loadExampleTokenizer("gpt-4o-mini-2024-07-18");
    expect(cl100k.countText("Pivot! Pivot! PIVOT!")).toBe(9);
    expect(o200k.countText("Pivot! Pivot! PIVOT!")).toBe(8);
    // Special-token text in dialogue is counted as text, not refused.
    expect(cl100k.countText("<|endoftext|>")).toBeGreaterThan(1);
  });
});

describe("checkTrainingJsonl", async () => {
  const tokenizer = await loadExampleTokenizer("gpt-3.5-turbo-0125");
  const good = JSON.stringify({ messages: [{ role: "user", content: "Hi." }, { role: "assistant", content: "Hey." }] });

  it("checks each line and numbers them from 1; the final newline is not a line", () => {
    const checked = checkTrainingJsonl(`${good}\n{oops\n\n${good}\n`, tokenizer);
    expect(checked.map((c) => [c.line, c.check.ok ? "ok" : c.check.reason])).toEqual([
      [1, "ok"],
      [2, "not valid JSON"],
      [3, "empty line"],
      [4, "ok"],
    ]);
  });
});

describe("defaultEpochs and estimateTrainingCost", () => {
  it.each([
    [1, 25],
    [3, 25],
    [4, 25],
    [10, 10],
    [33, 3],
    [34, 3],
    [50, 3],
    [8333, 3],
    [8334, 2],
    [12_500, 2],
    [12_501, 1],
    [100_000, 1],
  ])("%i examples → %i epochs", (examples, epochs) => {
    expect(defaultEpochs(examples)).toBe(epochs);
  });

  it("estimates billed tokens as the sum of capped example tokens times epochs", () => {
    expect(estimateTrainingCost([100, 200, 20_000], "gpt-3.5-turbo-0125", 3)).toMatchObject({
      examples: 3,
      totalTokens: 20_300,
      epochs: 3,
      defaultEpochs: false,
      billedTokens: (100 + 200 + 16_385) * 3,
    });
  });

  it("uses OpenAI's default epochs when none are chosen", () => {
    expect(estimateTrainingCost(Array(10).fill(50), "gpt-4o-mini-2024-07-18")).toMatchObject({ epochs: 10, defaultEpochs: true, billedTokens: 5000 });
  });
});
