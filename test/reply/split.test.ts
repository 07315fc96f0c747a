import { describe, expect, it } from "vitest";
import { DISCORD_MESSAGE_LIMIT, splitMessage } from "../../src/reply/split.ts";

const words = (n: number, word = "pivot") => Array.from({ length: n }, () => word).join(" ");
const fences = (s: string) => (s.match(/^```/gm) ?? []).length;

describe("splitMessage", () => {
  it.each([
    ["short", ["short"]],
    ["  padded  ", ["padded"]],
    ["", []],
  ])("%j → %j", (text, expected) => {
    expect(splitMessage(text)).toEqual(expected);
  });

  it("splits at a paragraph boundary when there is one", () => {
    const a = words(200); // 1199 chars
    const b = words(200);
    expect(splitMessage(`${a}\n\n${b}`)).toEqual([a, b]);
  });

  it("prefers a sentence boundary over a word boundary", () => {
    const sentence = `${words(150)}.`;
    const chunks = splitMessage(`${sentence} ${sentence} ${sentence}`, 2000);
    expect(chunks[0]!.endsWith(".")).toBe(true);
    expect(chunks.every((c) => c.length <= 2000)).toBe(true);
  });

  it("splits at words when there are no sentences, losing no word", () => {
    const text = words(1000);
    const chunks = splitMessage(text);
    expect(chunks.length).toBe(Math.ceil(text.length / 1990));
    expect(chunks.join(" ")).toBe(text);
  });

  it("hard-cuts a single enormous word without breaking a surrogate pair", () => {
    const text = "😅".repeat(3000);
    const chunks = splitMessage(text);
    expect(chunks.join("")).toBe(text);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(DISCORD_MESSAGE_LIMIT);
    for (const c of chunks) expect(c).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
  });

  it("closes and reopens a code block across the cut, keeping the language and indentation", () => {
    const code = Array.from({ length: 200 }, (_, i) => `    line_${i} = compute(${i})`).join("\n");
    const chunks = splitMessage(`Here you go:\n\`\`\`python\n${code}\n\`\`\`\nDone.`);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(DISCORD_MESSAGE_LIMIT);
      expect(fences(chunk) % 2).toBe(0);
    }
    expect(chunks[1]!.startsWith("```python\n    line_")).toBe(true);
    const rejoined = chunks.map((c, i) => (i > 0 ? c.replace(/^```python\n/, "") : c).replace(/\n```$/, (m, o, s) => (o + m.length === s.length && i < chunks.length - 1 ? "" : m))).join("\n");
    expect(rejoined).toContain(code);
  });

  it("handles a 12,000-character message", () => {
    const text = Array.from({ length: 120 }, (_, i) => `Sentence ${i} is here and it is long enough to matter, okay?`).join(" ").padEnd(12_000, " yes");
    const chunks = splitMessage(text);
    expect(chunks.length).toBeGreaterThanOrEqual(6);
    for (const c of chunks) expect(c.length).toBeGreaterThan(0);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(DISCORD_MESSAGE_LIMIT);
    expect(chunks.join(" ").replace(/\s+/g, " ")).toBe(text.trim().replace(/\s+/g, " "));
  });

  it("every chunk fits and is non-empty for random inputs", () => {
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    const parts = ["word ", "sentence. ", "\n", "\n\n", "```js\n", "```\n", "😅", "x".repeat(300), "  indented\n"];
    for (let run = 0; run < 300; run++) {
      let text = "";
      while (text.length < next() * 9000) text += parts[Math.floor(next() * parts.length)];
      const chunks = splitMessage(text);
      for (const c of chunks) {
        expect(c.length).toBeLessThanOrEqual(DISCORD_MESSAGE_LIMIT);
        expect(c.trim()).not.toBe("");
      }
    }
  });
});
