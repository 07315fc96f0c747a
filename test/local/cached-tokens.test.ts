import { rmSync } from "node:fs";
import fc from "fast-check";
import type { LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reuseCachedTokens, type TokenCodec } from "../../src/backends/local/cached-tokens.ts";
import { llamaRuntime } from "../../src/backends/local/runtime.ts";
import { writeTinyModelSet, type TinyModelSet } from "../gguf/tiny-models.ts";
import { TEST_BUILD, TEST_THREADS } from "./helpers.ts";

/**
 * A toy tokenizer whose tokens are their own text: "<s>" spells nothing, "<c3>" and "<a9>" are the
 * two bytes of "é" (alone, the first shows as "�"), and the rest is split greedily into the longest
 * pieces of the vocabulary.
 */
const VOCAB = ["abc", "ab", "bc", "a", "b", "c", "d", " ", "\n", ":"];
const toy: TokenCodec<string> = {
  detokenize: (tokens) => {
    const text = tokens.filter((t) => t !== "<s>").join("").replace(/<c3><a9>/g, "é");
    return text.replace(/<c3>$/, "\uFFFD");
  },
  tokenizeContinuation: (text) => {
    const out: string[] = [];
    for (let i = 0; i < text.length; ) {
      if (text[i] === "é") {
        out.push("<c3>", "<a9>");
        i++;
        continue;
      }
      const piece = VOCAB.find((p) => text.startsWith(p, i));
      if (!piece) throw new Error(`toy tokenizer: no piece for ${JSON.stringify(text[i])}`);
      out.push(piece);
      i += piece.length;
    }
    return out;
  },
};
const tok = (text: string) => ["<s>", ...toy.tokenizeContinuation(text)];

describe("reuseCachedTokens", () => {
  it.each([
    ["the cache holds a prefix of the prompt: nothing to splice", tok("ab:"), tok("ab:\nc"), tok("ab:\nc")],
    ["the same text in the model's own split is kept, the rest tokenized", ["<s>", "a", "b", "c", "d"], tok("abcd\nab"), ["<s>", "a", "b", "c", "d", "\n", "ab"]],
    ["kept only as far as the text agrees (a reply cut by the cleaner)", ["<s>", "a", "b", "c", "d", "d"], tok("abc\nd"), ["<s>", "a", "b", "c", "\n", "d"]],
    ["nothing of the cache fits: the fresh prompt", ["<s>", "d", "d"], tok("abc"), tok("abc")],
    ["a split character is never cut in half", ["<s>", "a", "<c3>", "<a9>", "d"], tok("aéb"), ["<s>", "a", "<c3>", "<a9>", "b"]],
    ["the whole prompt is in the cache, split differently", ["<s>", "a", "b", "c", "d"], tok("abc"), ["<s>", "a", "b", "c"]],
    ["an empty cache", [], tok("abc"), tok("abc")],
  ])("%s", (_name, cached, fresh, expected) => {
    expect(reuseCachedTokens(cached, fresh, toy)).toEqual(expected);
  });

  it("always spells exactly the fresh prompt's text, and reuses at least the common prefix", () => {
    const text = fc.array(fc.constantFrom("a", "b", "c", "d", " ", "\n", ":", "é"), { maxLength: 14 }).map((cs) => cs.join(""));
    // Any split of a text into vocabulary pieces: how a model may have sampled it.
    const anySplit = (s: string) =>
      fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((cuts) => {
        const out: string[] = [];
        let piece = "";
        for (let i = 0; i < s.length; i++) {
          if (s[i] === "é") {
            if (piece) out.push(...toy.tokenizeContinuation(piece));
            piece = "";
            out.push("<c3>", "<a9>");
            continue;
          }
          piece += s[i];
          if (cuts[i]) {
            out.push(...toy.tokenizeContinuation(piece));
            piece = "";
          }
        }
        if (piece) out.push(...toy.tokenizeContinuation(piece));
        return ["<s>", ...out];
      });
    const cachedAndFresh = fc.tuple(text, text, text).chain(([shared, oldTail, newTail]) =>
      fc.tuple(anySplit(shared + oldTail), fc.constant(tok(shared + newTail))),
    );
    fc.assert(
      fc.property(cachedAndFresh, ([cached, fresh]) => {
        const out = reuseCachedTokens(cached, fresh, toy);
        expect(toy.detokenize(out, [])).toBe(toy.detokenize(fresh, []));
        let common = 0;
        while (cached[common] !== undefined && cached[common] === fresh[common]) common++;
        for (let i = 0; i < common; i++) expect(out[i]).toBe(cached[i]);
      }),
      { numRuns: 3000 },
    );
  });
});

describe("reuseCachedTokens with a real llama.cpp tokenizer", () => {
  let files: TinyModelSet;
  let model: LlamaModel;
  beforeAll(async () => {
    files = writeTinyModelSet();
    const llama = await llamaRuntime({ gpu: false, threads: TEST_THREADS, build: TEST_BUILD });
    model = await llama.loadModel({ modelPath: files.model, gpuLayers: 0, vocabOnly: true });
  });
  afterAll(async () => {
    await model?.dispose();
    rmSync(files.dir, { recursive: true, force: true });
  });

  it("keeps a reply sampled as byte tokens, and the prompt still reads the same", () => {
    const codec: TokenCodec<Token> = {
      detokenize: (tokens, before) => model.detokenize(tokens, false, before),
      tokenizeContinuation: (text) => model.tokenize(text, false, "trimLeadingSpace"),
    };
    const prompt1 = "Alice: hi\nFriend:";
    const prompt2 = `${prompt1} Oh, I don't know.\nAlice: why?\nFriend:`;
    // The model said ` Oh,` canonically, then ` I don't know.` as single bytes, as a sampler may.
    // The tiny vocab's byte tokens <0x00>…<0xFF> follow its three specials.
    const bytes = (s: string) => [...Buffer.from(s, "utf8")].map((b) => (3 + b) as Token);
    const cached = [model.tokens.bos!, ...model.tokenize(prompt1), ...model.tokenize(" Oh,", false, "trimLeadingSpace"), ...bytes(" I don't know.\n")];
    const fresh = [model.tokens.bos!, ...model.tokenize(prompt2)];
    const out = reuseCachedTokens(cached, fresh, codec);
    expect(out.slice(0, cached.length)).toEqual(cached);
    expect(model.detokenize(out)).toBe(model.detokenize(fresh));
    expect(out.length).toBeGreaterThan(fresh.length); // bytes are longer: exactly what was kept
  });
});
