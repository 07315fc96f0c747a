import { describe, expect, it } from "vitest";
import { cleanReply, ReplyCleaner, streamingView } from "../../src/reply/clean.ts";
import { MAIN_CAST } from "../../src/reply/speakers.ts";

const opts = { personaName: "Friend", windowNames: ["Alice", "Bob Smith"] };
const clean = (raw: string) => cleanReply(raw, opts);

describe("cleanReply", () => {
  it.each([
    // The original experiment's outputs.
    ["Friend: Oh, I don't know, what are you up for?\n\nRoss: (entering) Hey Ben!\n\nMonica: Hi!", "Oh, I don't know, what are you up for?"],
    ["Chandler: Oh, they're just so cute!\n\nPhoebe: Oh, you've seen them?", "Oh, they're just so cute!"],
    ["Friend: 🤔😓 Oh boy, do we have to? 😅", "🤔😓 Oh boy, do we have to? 😅"],
    ["Friend: Oh, I don't know.\nRoss: (entering) Hey Ben!", "Oh, I don't know."],
    // Persona labels in any case, repeated, bold or with a direction.
    ["friend: hey", "hey"],
    ["FRIEND: HEY", "HEY"],
    ["Friend: Friend: Friend: hey", "hey"],
    ["**Friend:** hey", "hey"],
    ["**Friend**: hey", "hey"],
    ["*Friend*: hey", "hey"],
    ["__Friend__: hey", "hey"],
    ["Friend (laughing): you wish", "you wish"],
    ["  Friend :   spaced out", "spaced out"],
    ["Friend:\nOh hi", "Oh hi"],
    // Follow-on speakers of every shape.
    ["Sure.\nRoss: no", "Sure."],
    ["Sure.\n\n\nRachel: no", "Sure."],
    ["Sure.\nJoey (to Rachel): how you doin'", "Sure."],
    ["Sure.\nMr. Treeger: the trash", "Sure."],
    ["Sure.\nMonica and Phoebe: Hey.", "Sure."],
    ["Sure.\nPHOE/MNCA: Hey!", "Sure."],
    ["Sure.\nAll: Hey!", "Sure."],
    ["Sure.\nGunther: coffee?", "Sure."],
    ["Sure.\nalice: hi", "Sure."],
    ["Sure.\nBob Smith: hi", "Sure."],
    ["Sure.\n**Ross:** hi", "Sure."],
    ["Sure.\nUser: next question", "Sure."],
    ["Sure.\nBen: thanks", "Sure."],
    // Stage directions on their own line.
    ["Yeah right.\n(Ross enters)", "Yeah right."],
    ["Yeah right.\n[Scene: Central Perk]\nJoey: hey", "Yeah right."],
    ["Yeah right.\n*(laughs)*", "Yeah right."],
    ["(sighs)\nFine, I'll come.", "Fine, I'll come."],
    ["Friend: (sighs)\nFine.", "Fine."],
    // Things that must survive.
    ["Hey! (hugs him) Missed you.", "Hey! (hugs him) Missed you."],
    ["First line.\nSecond line.", "First line.\nSecond line."],
    ["Para one.\n\nPara two.", "Para one.\n\nPara two."],
    ["Sure.\nFriend: and another thing", "Sure.\nand another thing"],
    ["My plan:\nMonday: gym\nTuesday: pizza", "My plan:\nMonday: gym\nTuesday: pizza"],
    ["Note: I'm kidding", "Note: I'm kidding"],
    ["ratio: 3:1", "ratio: 3:1"],
    ["Time is 10:30, come on", "Time is 10:30, come on"],
    ["I said: no way", "I said: no way"],
    ["```\ncode: here\n```", "```\ncode: here\n```"],
    ["Windows\r\nline\r\nends", "Windows\nline\nends"],
    ["Friend: (sighs)", ""],
    ["Sure.\nRoss: hi", "Sure."],
    // Empty results are possible; callers handle them.
    ["Friend:", ""],
    ["Ross: hi", "hi"],
    ["(Ross enters)", ""],
    ["   \n\n  ", ""],
  ])("%j → %j", (raw, expected) => {
    expect(clean(raw)).toBe(expected);
  });
});

describe("streamingView", () => {
  it.each([
    ["Frie", "", false],
    ["Friend: Oh", "", false], // "Oh" alone could still become "Oh Ross:"? no — but a one-word line waits for more
    ["Friend: Oh, I don't", "Oh, I don't", false],
    ["Oh, I don't know.\nRo", "Oh, I don't know.", false],
    ["Oh, I don't know.\nRoss", "Oh, I don't know.", false],
    ["Oh, I don't know.\nRoss:", "Oh, I don't know.", false],
    ["Oh, I don't know.\nRoss: ", "Oh, I don't know.", true],
    ["Oh, I don't know.\nRoss: (ent", "Oh, I don't know.", true],
    ["Oh, I don't know.\n(Ross ent", "Oh, I don't know.", false],
    ["Oh, I don't know.\n(Ross enters)\n", "Oh, I don't know.", true],
    ["Oh, I don't know.\nwhat do you think, seriously", "Oh, I don't know.\nwhat do you think, seriously", false],
  ])("%j shows %j (done: %s)", (raw, text, done) => {
    expect(streamingView(raw, opts)).toEqual({ text, done });
  });
});

/** A tiny seeded PRNG so the property runs are reproducible. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
}

const FRAGMENTS = [
  "Friend: ", "**Friend:** ", "friend: ", "Ross: ", "Monica (entering): ", "Alice: ", "Mr. Treeger: ", "Note: ",
  "(Ross enters)", "[Scene: Central Perk]", "*(laughs)*", "Oh, ", "I don't know", " what are you up for?", "😅", "🤔",
  "\n", "\n", "\n\n", " ", "Hey Ben!", "Could I BE", "any more", ":", "(", ")", "Joey", " and ", "PHOE/MNCA: ",
];

function randomOutput(next: () => number): string {
  let out = "";
  const n = 1 + Math.floor(next() * 14);
  for (let i = 0; i < n; i++) out += FRAGMENTS[Math.floor(next() * FRAGMENTS.length)];
  return out;
}

describe("cleaner properties", () => {
  const next = prng(42);
  const outputs = Array.from({ length: 3000 }, () => randomOutput(next));
  const labelLine = new RegExp(`^[ \\t]*[*_]*(?:${[...MAIN_CAST, "Friend", "Alice", "Mr. Treeger"].join("|")})[*_]*[ \\t]*(?:\\([^)]*\\))?[ \\t]*:(?![\\w/])`, "im");

  it("never leaves a line that starts with a known speaker label", () => {
    for (const raw of outputs) expect(clean(raw), JSON.stringify(raw)).not.toMatch(labelLine);
  });

  it("never leaves a stage-direction line after the first line", () => {
    for (const raw of outputs) {
      const lines = clean(raw).split("\n");
      for (const line of lines) expect(line, JSON.stringify(raw)).not.toMatch(/^\s*[*_]*\s*(?:\([^()]*\)|\[[^\]]*\])\s*[*_]*\s*$/);
    }
  });

  it("is idempotent", () => {
    for (const raw of outputs) expect(clean(clean(raw)), JSON.stringify(raw)).toBe(clean(raw));
  });

  it("never streams text that the final reply does not start with", () => {
    const failures: string[] = [];
    for (const raw of outputs) {
      const final = clean(raw);
      const cleaner = new ReplyCleaner(opts);
      // Feed it character by character: every possible chunk boundary.
      for (const char of raw) {
        const view = cleaner.push(char).view();
        if (!final.startsWith(view.text) || (view.done && view.text !== final)) failures.push(`${JSON.stringify(raw)} showed ${JSON.stringify(view.text)}`);
      }
      if (cleaner.text() !== final) failures.push(`${JSON.stringify(raw)} ended as ${JSON.stringify(cleaner.text())}`);
    }
    expect(failures.slice(0, 5)).toEqual([]);
  });
});

describe("pathological output", () => {
  // Guards against regex backtracking blow-ups: each of these hung or crawled in an earlier version.
  it.each([
    ["a".repeat(20_000), "a".repeat(20_000)],
    [`Ok.\n${"Could I BE any more ".repeat(400)}`, `Ok.\n${"Could I BE any more ".repeat(400).trimEnd()}`],
    [`Ok.\n${"Joey and ".repeat(500)}`, `Ok.\n${"Joey and ".repeat(500).trimEnd()}`],
    [`Ok.\n${"(".repeat(5000)}`, `Ok.\n${"(".repeat(5000)}`],
    [`Ok.\n${"A/".repeat(3000)}: hi`, `Ok.\n${"A/".repeat(3000)}: hi`],
  ])("cleans %#", (raw, expected) => {
    const cleaner = new ReplyCleaner(opts);
    for (let i = 0; i < raw.length; i += 7) cleaner.push(raw.slice(i, i + 7)).view();
    expect(cleaner.text()).toBe(expected);
  });
});
