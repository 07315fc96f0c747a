import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopScanner } from "../../src/backends/local/stop-scanner.ts";

/** Feeds the chunks; returns what was released and whether a stop was seen. */
function scan(stops: readonly string[], chunks: readonly string[]): { released: string[]; stopped: boolean } {
  const scanner = new StopScanner(stops);
  const released: string[] = [];
  for (const chunk of chunks) {
    const out = scanner.push(chunk);
    released.push(out.text);
    if (out.stopped) return { released, stopped: true };
  }
  const end = scanner.flush();
  released.push(end.text);
  return { released, stopped: end.stopped };
}

/** What an API's `stop` leaves of the whole text: everything before the earliest stop. */
function expected(stops: readonly string[], text: string): { text: string; stopped: boolean } {
  const hits = stops.filter(Boolean).map((s) => text.indexOf(s)).filter((i) => i !== -1);
  return hits.length === 0 ? { text, stopped: false } : { text: text.slice(0, Math.min(...hits)), stopped: true };
}

describe("StopScanner", () => {
  it.each([
    ["no stops", [], [" Oh,", " I", " know."], [" Oh,", " I", " know.", ""], false],
    ["a stop inside one chunk", ["\nRoss:"], [" Hi.\nRoss: hey"], [" Hi."], true],
    ["a stop split over chunks is held back, never shown", ["\nRoss:"], [" Hi.", "\n", "Ro", "ss:", " hey"], [" Hi.", "", "", ""], true],
    ["a false start is released once it is decided", ["\nRoss:"], [" Hi.", "\n", "Ro", "b"], [" Hi.", "", "", "\nRob", ""], false],
    ["the earliest of several stops wins", ["\nRoss:", "\nMonica:"], [" a\nMonica: b\nRoss:"], [" a"], true],
    ["a stop at the very start leaves nothing", ["\nRoss:"], ["\nRoss: hey"], [""], true],
    ["held text is released at the end of the stream", ["\nRoss:"], [" Hi.\nRo"], [" Hi.", "\nRo"], false],
    ["a stop that overlaps itself", ["aab"], ["aa", "aab"], ["", "aa"], true],
    ["empty stops are ignored", [""], [" Hi."], [" Hi.", ""], false],
    ["a shorter stop waits while a longer one that starts earlier may still complete", ["aRaa", "R"], ["a", "Ra", "a"], ["", "", ""], true],
    ["…and wins once the longer one cannot", ["aRaa", "R"], ["a", "Ra", "b"], ["", "", "a"], true],
    ["a stop held at the end of the stream still cuts", ["aRaa", "R"], ["a", "Ra"], ["", "", "a"], true],
  ])("%s", (_name, stops, chunks, released, stopped) => {
    expect(scan(stops, chunks)).toEqual({ released, stopped });
  });

  it("after a stop, nothing more is released", () => {
    const scanner = new StopScanner(["\n"]);
    expect(scanner.push("a\nb")).toEqual({ text: "a", stopped: true });
    expect(scanner.push("c")).toEqual({ text: "", stopped: true });
    expect(scanner.flush()).toEqual({ text: "", stopped: true });
  });

  it("for any text, stops and chunking: releases exactly the text before the first stop, and never a piece of a stop", () => {
    const alphabet = fc.constantFrom("a", "b", "\n", "R", ":", " ");
    const word = fc.array(alphabet, { minLength: 0, maxLength: 6 }).map((cs) => cs.join(""));
    fc.assert(
      fc.property(fc.array(word, { maxLength: 4 }), fc.array(word, { maxLength: 12 }), (stops, chunks) => {
        const text = chunks.join("");
        const out = scan(stops, chunks);
        const want = expected(stops, text);
        expect(out.released.join("")).toBe(want.text);
        expect(out.stopped).toBe(want.stopped);
        // Every prefix released so far is a prefix of the final answer: nothing shown is taken back.
        let shown = "";
        for (const piece of out.released) {
          shown += piece;
          expect(want.text.startsWith(shown)).toBe(true);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
