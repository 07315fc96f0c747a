import fc from "fast-check";
import { Tiktoken } from "js-tiktoken/lite";
import cl100kBase from "js-tiktoken/ranks/cl100k_base";
import o200kBase from "js-tiktoken/ranks/o200k_base";
import { describe, expect, it } from "vitest";
import { BpeTokenCounter } from "../../src/core/bpe.ts";
import { countTokens } from "../../src/core/tokens.ts";

// js-tiktoken's own encoder is the reference: quadratic on long runs, so only short ones go through it.
const reference = { cl100k: new Tiktoken(cl100kBase), o200k: new Tiktoken(o200kBase) };
const counters = { cl100k: new BpeTokenCounter(cl100kBase), o200k: new BpeTokenCounter(o200kBase) };
const referenceCount = (encoding: keyof typeof reference, text: string) => reference[encoding].encode(text, [], []).length;

const english = "So I was thinking, maybe we could go to Central Perk later? Joey said he'd be there around 5:30.";
const code = "function f(x: number): number {\n  return x * 2 + Math.max(0, x - 1); // doubled\n}\nconst xs = [1, 2, 3].map(f);\n";

describe("countTokens (cl100k_base)", () => {
  it.each([
    // Counts from OpenAI's tokenizer, independent of any implementation here.
    ["hello world", 2],
    ["", 0],
    [" ", 1],
  ])("%j is %i tokens", (text, tokens) => {
    expect(countTokens(text)).toBe(tokens);
  });

  it.each([
    ["English", english],
    ["code", code],
    ["a long English message", english.repeat(20)],
    ["CJK", "我们明天在咖啡馆见面吧，好吗？"],
    ["emoji with ZWJ and skin tones", "👩‍👩‍👧‍👦 👍🏽 🏳️‍🌈 😅😅😅"],
    ["accents and combining marks", "Zoë Ångström naïve e\u0301"],
    ["special-token text counts as plain text", "<|endoftext|> and <|fim_prefix|>"],
    ["unusual line breaks", "a\rb\u2028c\u2029d\u0085e\r\nf"],
    ["a lone surrogate", "bad \ud800 pair \udc00"],
    ["contractions", "I'm you'll they'D WE'RE it's"],
    ["digits", "1234567890 3.14159 10:30"],
    ["runs of each class", `${"中".repeat(300)} ${"😅".repeat(150)} ${"x".repeat(600)} ${"!".repeat(300)} ${" ".repeat(300)}x ${"\n".repeat(50)}`],
  ])("equals js-tiktoken for %s", (_label, text) => {
    expect(countTokens(text)).toBe(referenceCount("cl100k", text));
  });
});

/** Text built from pieces that exercise every branch of the pre-tokeniser and long merges. */
const hostileText = fc
  .array(
    fc.oneof(
      fc.constantFrom("中", "😅", "x", "X", " ", "  ", "\n", "\r\n", "\t", "!", "'s", "'LL", "é", "e\u0301", "\u200b", "\u2028", "\u0085", "Ｆｒｉｅｎｄ：", "<|endoftext|>", "\ud800", "7"),
      fc.string({ unit: "grapheme", maxLength: 6 }),
      fc.string({ unit: "binary", maxLength: 6 }),
      fc.constantFrom("hello", " world", " Central Perk", "function", "()", "=>", "—", "...", "🏳️‍🌈"),
    ),
    { maxLength: 120 },
  )
  .map((parts) => parts.join(""));

describe("BpeTokenCounter", () => {
  for (const encoding of ["cl100k", "o200k"] as const) {
    it(`counts exactly what js-tiktoken encodes with ${encoding}, for any text`, () => {
      fc.assert(
        fc.property(hostileText, (text) => {
          expect(counters[encoding].count(text)).toBe(referenceCount(encoding, text));
        }),
        { numRuns: 400 },
      );
    });
  }

  it("counts long runs that js-tiktoken takes seconds over, still exactly", () => {
    // Each of these is one pre-tokenised piece; js-tiktoken is quadratic in its length.
    for (const text of ["中".repeat(400), "😅".repeat(300), "x".repeat(1500), "ab".repeat(500), "!?".repeat(400), `${" ".repeat(1000)}x`]) {
      expect(counters.cl100k.count(text), text.slice(0, 4)).toBe(referenceCount("cl100k", text));
    }
  });

  it("counts 50,000-character runs without whitespace (a quadratic counter would not finish)", () => {
    // No time is asserted: the test's own timeout is the guard. Each count is one token per
    // merge-free unit, or the run's known structure: 8 x's make one cl100k token.
    expect(counters.cl100k.count("x".repeat(50_000))).toBe(50_000 / 8);
    expect(counters.cl100k.count("中".repeat(50_000))).toBe(50_000);
    expect(counters.o200k.count("😅".repeat(25_000))).toBeGreaterThan(0);
  });
});
