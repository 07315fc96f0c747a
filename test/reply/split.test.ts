import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DISCORD_MESSAGE_LIMIT, MIN_SPLIT_LIMIT, splitMessage, splitMessageParts, type MessagePart } from "../../src/reply/split.ts";

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

/**
 * What every split must satisfy: parts fit and are not blank, the bodies are the text itself (only
 * whitespace between them), no surrogate pair is cut, and no part leaves a code block open that
 * the text closes.
 */
function expectSoundSplit(text: string, limit: number): MessagePart[] {
  const parts = splitMessageParts(text, limit);
  expect(splitMessage(text, limit)).toEqual(parts.map((p) => p.reopen + p.body + p.close));
  let at = 0;
  parts.forEach((part, i) => {
    const message = part.reopen + part.body + part.close;
    expect(message.length, `part ${i}`).toBeLessThanOrEqual(limit);
    expect(part.body.trim(), `part ${i}`).not.toBe("");
    const found = text.indexOf(part.body, at);
    expect(found, `part ${i} is a slice of the text`).toBeGreaterThanOrEqual(at);
    expect(text.slice(at, found), `only whitespace before part ${i}`).toMatch(/^\s*$/);
    at = found + part.body.length;
    expect(part.body, `part ${i} cuts a surrogate pair`).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
    // Every part but the last closes its code block; the last ends as the text does.
    const last = i === parts.length - 1;
    expect(openFenceAtEnd(message), `part ${i} leaves a code block open`).toBe(last ? openFenceAtEnd(text) : null);
    // A part reopens exactly the block the part before it closed.
    const closed = i > 0 ? parts[i - 1]!.close : "";
    expect(part.reopen === "", `part ${i} reopen`).toBe(closed === "");
    if (closed) expect(part.reopen.startsWith(closed.slice(1))).toBe(true);
  });
  expect(text.slice(at), "only whitespace after the last part").toMatch(/^\s*$/);
  return parts;
}

/** The test's own reading of fences (CommonMark-like; markers over 64 characters are text). */
function openFenceAtEnd(message: string): string | null {
  let open: string | null = null;
  for (const line of message.split("\n")) {
    const m = /^[ \t]*(`{3,}|~{3,})(.*)$/.exec(line);
    if (!m || m[1]!.length > 64 || (m[1]![0] === "`" && m[2]!.includes("`"))) continue;
    if (!open) open = m[1]!;
    else if (m[1]![0] === open[0] && m[1]!.length >= open.length && !m[2]!.trim()) open = null;
  }
  return open;
}

const rejoin = (parts: MessagePart[]) => parts.map((p) => p.body).join("");

describe("splitMessage on hostile replies", () => {
  it.each([
    ["a fence whose info string is 5000 characters", "```" + "y".repeat(5000)],
    ["10,000 characters without a space", "x".repeat(10_000)],
    ["a 20-backtick fence around 5000 characters of code", `${"`".repeat(20)}js\n${"let a = 1;\n".repeat(450)}${"`".repeat(20)}`],
    ["a tilde fence", `~~~python\n${"print(1)\n".repeat(600)}~~~\nafter`],
    ["a fence longer than any marker worth reopening", `${"`".repeat(100)}\n${"code\n".repeat(1000)}${"`".repeat(100)}`],
    ["an unclosed fence", `Look:\n\`\`\`\n${"x = 1\n".repeat(1000)}`],
    ["a long info string", `\`\`\`${"a".repeat(100)} b c\n${"code();\n".repeat(500)}\`\`\``],
    ["emoji without spaces", "😅".repeat(3001)],
    ["mixed astral characters and combining marks", "𝒜e\u0301🏳️‍🌈".repeat(900)],
    ["a blank-line gap with indentation", `${"word ".repeat(390)}\n\n\n        indented code line\n${"word ".repeat(390)}`],
  ])("%s: every part fits, and the parts give back the text", (_label, text) => {
    const parts = expectSoundSplit(text, DISCORD_MESSAGE_LIMIT);
    expect(parts.length).toBeGreaterThan(1);
  });

  it("gives back a no-space reply character for character", () => {
    const text = "x".repeat(10_000);
    expect(rejoin(splitMessageParts(text))).toBe(text);
    const fenced = "```" + "y".repeat(5000);
    expect(rejoin(splitMessageParts(fenced))).toBe(fenced);
  });

  it("closes and reopens a long fence with its own marker and language", () => {
    const fence = "`".repeat(20);
    const parts = splitMessageParts(`${fence}js\n${"let a = 1;\n".repeat(450)}${fence}`);
    expect(parts[0]!.close).toBe(`\n${fence}`);
    expect(parts[1]!.reopen).toBe(`${fence}js\n`);
  });

  it("reopens a fence without an info string that is not a language", () => {
    const parts = splitMessageParts(`\`\`\`${"a".repeat(100)}\n${"code();\n".repeat(500)}\`\`\``);
    expect(parts[1]!.reopen).toBe("```\n");
  });

  it(`refuses limits under ${MIN_SPLIT_LIMIT}`, () => {
    expect(() => splitMessage("hi", MIN_SPLIT_LIMIT - 1)).toThrow(RangeError);
  });
});

/** Random replies made of the things that break splitters. */
const replyText = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom("word ", "sentence. ", "Why? ", "\n", "\n\n", "   ", "\t", "  indented\n") },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.constantFrom("`", "~"), fc.integer({ min: 3, max: 24 }), fc.constantFrom("", "js", "python", " ts extra", "y".repeat(80), "`x`"))
          .map(([char, n, info]) => `\n${char.repeat(n)}${info}\n`),
      },
      { weight: 1, arbitrary: fc.integer({ min: 65, max: 90 }).map((n) => `\n${"`".repeat(n)}\n`) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom("x", "中", "😅", "-", "."), fc.integer({ min: 1, max: 3000 })).map(([c, n]) => c.repeat(n)) },
      { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
      { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x10000, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp)), maxLength: 40 }) },
    ),
    { maxLength: 60 },
  )
  .map((parts) => parts.join(""));

describe("splitMessage properties", () => {
  it("every part fits, none is blank, no surrogate pair or code block is cut open, and the parts give back the text", () => {
    fc.assert(
      fc.property(replyText, fc.integer({ min: MIN_SPLIT_LIMIT, max: DISCORD_MESSAGE_LIMIT }), (text, limit) => {
        expectSoundSplit(text, limit);
      }),
      { numRuns: 400 },
    );
  });
});
