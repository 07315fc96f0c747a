/**
 * What the terminal prints of model text: no control sequence survives (title changes, screen
 * clears, OSC 52 clipboard writes, cursor moves, C1 controls), in the reply or in the raw view.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { quoteForTerminal, stripControlSequences } from "../../src/chat/control-sequences.ts";
import { TerminalReply, rawView, type TerminalOutput } from "../../src/chat/terminal.ts";

/** Anything a terminal would act on: ESC, every other C0 control but tab and newline, DEL and C1. */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

describe("stripControlSequences", () => {
  it.each([
    ["plain text stays", "Oh, I don't know.\n\tHi!", "Oh, I don't know.\n\tHi!"],
    ["a title change (OSC 0, BEL)", "a\x1b]0;pwned\x07b", "ab"],
    ["a title change (OSC 2, ST)", "a\x1b]2;pwned\x1b\\b", "ab"],
    ["an OSC 52 clipboard write", "ok\x1b]52;c;cm0gLXJmIH4=\x07 done", "ok done"],
    ["an OSC 8 hyperlink keeps its text", "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"],
    ["a screen clear and cursor home", "\x1b[2J\x1b[Hhello", "hello"],
    ["colours and private modes", "\x1b[31;1mred\x1b[0m \x1b[?1049h\x1b[?25l", "red "],
    ["a full reset (ESC c) and a charset switch (ESC ( 0)", "\x1bcx\x1b(0y", "xy"],
    ["C1 CSI (U+009B)", "a\x9b2Jb", "ab"],
    ["C1 OSC to C1 ST", "a\x9d0;title\x9cb", "ab"],
    ["a DCS with its payload", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"],
    ["carriage return, backspace, bell, DEL and NUL", "abc\rX\b\x07\x7f\x00d", "abcXd"],
    ["an OSC cut off by the end of the text (still streaming)", "hi \x1b]52;c;cm0g", "hi "],
    ["a CSI cut off by the end of the text", "hi \x1b[3", "hi "],
    ["a lone ESC at the end", "hi \x1b", "hi "],
    ["an ESC ( cut off at the end", "hi \x1b(", "hi "],
    ["ESC before a newline: the newline stays", "a\x1b\nb", "a\nb"],
    ["text that only looks like a sequence", "[31m ]0;title", "[31m ]0;title"],
  ])("%s", (_name, input, expected) => {
    expect(stripControlSequences(input)).toBe(expected);
  });

  it("never leaves a control character, whatever the input", () => {
    const pieces = fc.oneof(
      fc.string({ unit: "binary" }),
      fc.constantFrom("\x1b", "\x1b[", "\x1b]", "\x07", "\x1b\\", "\x9b", "\x9d", "\x9c", "52;c;", "2J", "\n", "\t", "m", "P"),
    );
    fc.assert(
      fc.property(fc.array(pieces, { maxLength: 20 }), (parts) => {
        expect(stripControlSequences(parts.join(""))).not.toMatch(CONTROL);
      }),
      { numRuns: 500 },
    );
  });

  it("keeps text without controls as it is", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (text) => {
        fc.pre(!CONTROL.test(text));
        expect(stripControlSequences(text)).toBe(text);
      }),
    );
  });
});

describe("the terminal's reply and raw view", () => {
  const terminal = (): TerminalOutput & { text: string } => {
    const out = { text: "", color: false, write: (t: string) => void (out.text += t) };
    return out;
  };

  it("prints no control character from streamed model text, however it is chunked, raw view included", async () => {
    const pieces = fc.oneof(fc.string({ unit: "binary", maxLength: 8 }), fc.constantFrom("\x1b]52;c;cm0gLXJmIH4=\x07", "\x1b[2J", "\x1b(", "0", "\x9b31m", "\x1b]0;t\x1b\\", "\x85", "ok "));
    await fc.assert(
      fc.asyncProperty(fc.array(pieces, { minLength: 1, maxLength: 12 }), async (chunks) => {
        const out = terminal();
        const reply = new TerminalReply(out, "Friend", () => true);
        let text = "";
        for (const chunk of chunks) {
          text += chunk;
          reply.raw(chunk);
          await reply.update(text);
        }
        await reply.finish(text);
        expect(out.text).not.toMatch(CONTROL);
        // What was printed of the reply is the reply with its controls removed.
        expect(out.text.startsWith(`Friend: ${stripControlSequences(text)}\n`)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("the raw view shows controls escaped, visible and harmless", () => {
    const raw = "Hi\x1b]52;c;cm0g\x07 there\x9b2J\nRoss: ";
    const [line] = rawView(raw, "Hi there");
    expect(line).toBe(`  ┆ raw: "Hi\\u001b]52;c;cm0g\\u0007 there\\u009b2J\\nRoss: "`);
    expect(line).not.toMatch(CONTROL);
    expect(quoteForTerminal("plain")).toBe(JSON.stringify("plain"));
  });
});
