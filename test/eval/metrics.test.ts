import { loadSettings } from "../../src/config/settings.ts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cutPieces, hasFollowOnSpeaker, leaksLabel, speakersFor } from "../../src/eval/artefacts.ts";
import { parseContestant } from "../../src/eval/contestant.ts";
import { distinctN, percentile, rate, wilson } from "../../src/eval/metrics.ts";
import { seedFor } from "../../src/eval/runner.ts";

describe("wilson", () => {
  // Reference values worked by hand from the closed form (3 of 10 is the textbook example).
  it.each([
    [3, 10, 0.1078, 0.6032],
    [0, 10, 0, 0.2775],
    [10, 10, 0.7225, 1],
    [50, 200, 0.1951, 0.3143],
    [1, 1, 0.2065, 1],
  ])("%i of %i → [%f, %f]", (count, n, low, high) => {
    const [lo, hi] = wilson(count, n);
    expect(lo).toBeCloseTo(low, 4);
    expect(hi).toBeCloseTo(high, 4);
  });

  it("holds the rate, stays in [0, 1], and narrows as n grows at the same rate", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.double({ min: 0, max: 1, noNaN: true }), (n, p) => {
        const count = Math.round(p * n);
        const [lo, hi] = wilson(count, n);
        expect(lo).toBeGreaterThanOrEqual(0);
        expect(hi).toBeLessThanOrEqual(1);
        expect(lo).toBeLessThanOrEqual(count / n + 1e-12);
        expect(hi).toBeGreaterThanOrEqual(count / n - 1e-12);
        const [lo4, hi4] = wilson(count * 4, n * 4);
        expect(hi4 - lo4).toBeLessThan(hi - lo + 1e-12);
      }),
    );
  });

  it("n = 0 says nothing: rate null, interval [0, 1]", () => {
    expect(rate(0, 0)).toEqual({ count: 0, n: 0, rate: null, ci95: [0, 1] });
  });
});

describe("distinct-n and percentiles", () => {
  it("distinct-1 and distinct-2 count n-grams over every reply, never across two", () => {
    expect(distinctN(["a b a", "a b"], 1)).toBeCloseTo(2 / 5);
    expect(distinctN(["a b a", "a b"], 2)).toBeCloseTo(2 / 3);
    expect(distinctN(["Don't", "don’t"], 1)).toBe(1);
    expect(distinctN([""], 1)).toBeNull();
  });

  it("percentiles interpolate between ranks", () => {
    expect(percentile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(percentile([10], 0.95)).toBe(10);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], 0.95)).toBe(20);
    expect(percentile([], 0.5)).toBeNull();
  });
});

describe("artefacts, read as the cleaner reads labels", () => {
  const speakers = speakersFor("Friend", ["Zoë"], loadSettings().cast);
  it.each([
    ["Friend: hi", true],
    ["**Friend:** hi", true],
    ["Friend： hi", true],
    ["\u200bFriend:hi", true],
    ["- Friend (smiling): hi", true],
    ["Assistant: hi", true],
    ["Friendly, aren't we?", false],
    ["Ross: hi", false],
    ["hi\nFriend: again", false],
  ])("label leak in %j: %s", (raw, leak) => {
    expect(leaksLabel(raw, speakers)).toBe(leak);
  });

  it.each([
    ["Sure.\nRoss: (entering) Hey Ben!", true],
    ["Sure.\n**Joey:** how you doin'", true],
    ["Friend: Ross: hi", true],
    ["Sure.\nZOE: hi", true],
    ["Sure.\nGunther (walking by): coffee?", true],
    ["Sure.\nNote: bring snacks", false],
    ["Sure. Ross said hi.", false],
    ["Friend: sure", false],
  ])("follow-on speaker in %j: %s", (raw, followOn) => {
    expect(hasFollowOnSpeaker(raw, speakers)).toBe(followOn);
  });

  it("cut pieces are the raw text around what the cleaner kept", () => {
    expect(cutPieces("Friend: Okay.\nRoss: hi", "Okay.")).toEqual(["Friend: ", "\nRoss: hi"]);
    expect(cutPieces("Okay.", "Okay.")).toEqual([]);
    expect(cutPieces("Ross: mine", "")).toEqual(["Ross: mine"]);
  });
});

describe("contestant specs", () => {
  it.each([
    ["ft=openai", { name: "ft", backend: "openai" }],
    ["gpt=openai:ft:gpt-3.5-turbo-0125:org::abc", { backend: "openai", model: "ft:gpt-3.5-turbo-0125:org::abc" }],
    ["base=local:models/llama-2-7b.Q4_K_M.gguf", { backend: "local", model: "models/llama-2-7b.Q4_K_M.gguf", adapter: null }],
    ["lora=local:hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M+adapters/friends-lora.gguf", { model: "hf:TheBloke/Llama-2-7B-GGUF:Q4_K_M", adapter: "adapters/friends-lora.gguf" }],
    ["half=local:m.gguf+a.gguf@0.5", { model: "m.gguf", adapter: "a.gguf", adapterScale: 0.5 }],
    ["url=local:m.gguf+https://example.com/a@b/lora.gguf", { adapter: "https://example.com/a@b/lora.gguf" }],
  ])("%s", (value, expected) => {
    expect(parseContestant(value)).toMatchObject(expected);
  });

  it("seeds depend on the run's seed, the item and the attempt only", () => {
    expect(seedFor(1, "eval:a", 0)).toBe(seedFor(1, "eval:a", 0));
    const seeds = new Set([seedFor(1, "eval:a", 0), seedFor(2, "eval:a", 0), seedFor(1, "eval:b", 0), seedFor(1, "eval:a", 1)]);
    expect(seeds.size).toBe(4);
  });
});
