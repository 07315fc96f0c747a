import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { speakerName } from "../../src/core/speakers.ts";
import { cleanReply, ReplyCleaner, streamingView, type CleanOptions } from "../../src/reply/clean.ts";
import { loadSettings } from "../../src/config/settings.ts";

const { cast } = loadSettings();
const MAIN_CAST = cast.map((m) => m.name).filter((n) => n !== "Friend");

// The single source of truth for what the cleaner cuts and keeps (docs/CLEANER.md lists it in words).
const opts = { personaName: "Friend", windowNames: ["Alice", "Bob Smith", "Zoë 🦄"], cast };
const clean = (raw: string) => cleanReply(raw, opts);

describe("cleanReply", () => {
  it.each([
    // The original experiment's outputs.
    ["Friend: Oh, I don't know, what are you up for?\n\nRoss: (entering) Hey Ben!\n\nMonica: Hi!", "Oh, I don't know, what are you up for?"],
    ["Friend: 🤔😓 Oh boy, do we have to? 😅", "🤔😓 Oh boy, do we have to? 😅"],
    ["Friend: Oh, I don't know.\nRoss: (entering) Hey Ben!", "Oh, I don't know."],
    // Persona labels in any case and form, repeated, bold, with a direction, without a space.
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
    ["Friend:hi", "hi"],
    ["Ｆｒｉｅｎｄ：hi", "hi"],
    ["\u200bFriend: hi", "hi"],
    ["Assistant: hi", "hi"],
    ["Sure.\nFriend: and another thing", "Sure.\nand another thing"],
    ["Sure.\n**Friend:** more", "Sure.\nmore"],
    // A reply that opens as someone else is no reply: the engine regenerates once, then falls back.
    ["Ross: hey", ""],
    ["Ross:hey", ""],
    ["Chandler: Oh, they're just so cute!\n\nPhoebe: Oh, you've seen them?", ""],
    ["Friend: Ross: hi", ""],
    ["(sighs)\nRoss: hi", ""],
    ["**Ross:** hi", ""],
    // Follow-on speakers of every shape: the cast, recurring characters, the window's names, chat roles.
    ["Sure.\nRoss: no", "Sure."],
    ["Sure.\n\n\nRachel: no", "Sure."],
    ["Sure.\nJoey (to Rachel): how you doin'", "Sure."],
    ["Sure.\nMr. Treeger: the trash", "Sure."],
    ["Sure.\nDr. Green: Rachel!", "Sure."],
    ["Sure.\nMonica and Phoebe: Hey.", "Sure."],
    ["Sure.\nMonica & Phoebe: Hey.", "Sure."],
    ["Sure.\nPHOE/MNCA: Hey!", "Sure."],
    ["Sure.\nRoss Geller: Hi.", "Sure."],
    ["Sure.\nAll: Hey!", "Sure."],
    ["Sure.\nGunther: coffee?", "Sure."],
    ["Sure.\nBen: thanks", "Sure."],
    ["Sure.\nalice: hi", "Sure."],
    ["Sure.\nBob Smith: hi", "Sure."],
    ["Sure.\n**Ross:** hi", "Sure."],
    ["Sure.\nUser: next question", "Sure."],
    ["Sure.\nRoss:no space", "Sure."],
    // An unknown capitalised name counts with a stage direction.
    ["Sure.\nGunther (walking by): hi", "Sure."],
    ["Sure.\nFun Bobby (drunk): hey", "Sure."],
    // Names with emoji and accents, however the model spells them.
    ["Sure thing...\nZoë 🦄: I'm back", "Sure thing..."],
    ["Sure.\nZoe: back", "Sure."],
    ["Sure.\nＺＯＥ: back", "Sure."],
    ["Sure.\nZoë: back", "Sure."],
    // Labels dressed to slip past: zero-width, fullwidth colon, list and quote markers, bold after text.
    ["Sure.\n\u200bRoss: hi", "Sure."],
    ["Sure.\n\u200b\u200dRoss\u200b: hi", "Sure."],
    ["Sure.\nRoss： hi", "Sure."],
    ["Sure.\nＲｏｓｓ: hi", "Sure."],
    ["Sure.\n- Ross: hi", "Sure."],
    ["Sure.\n* Ross: hi", "Sure."],
    ["Sure.\n• Ross: hi", "Sure."],
    ["Sure.\n> Ross: hi", "Sure."],
    ["Sure.\n>> **Ross:** hi", "Sure."],
    ["Sure. **Ross:** hi", "Sure."],
    ["Sure. **Ross**: hi", "Sure."],
    ["Friend: Sure. __Monica:__ no", "Sure."],
    // Stage directions on their own line.
    ["Yeah right.\n(Ross enters)", "Yeah right."],
    ["Yeah right.\n[Scene: Central Perk]\nJoey: hey", "Yeah right."],
    ["Yeah right.\n*(laughs)*", "Yeah right."],
    ["Yeah right.\n(*sighs*)", "Yeah right."],
    ["Yeah right.\n([Scene: Central Perk])", "Yeah right."],
    ["(sighs)\nFine, I'll come.", "Fine, I'll come."],
    ["Friend: (sighs)\nFine.", "Fine."],
    ["Friend: (sighs)", ""],
    // Things that must survive.
    ["Hey! (hugs him) Missed you.", "Hey! (hugs him) Missed you."],
    ["First line.\nSecond line.", "First line.\nSecond line."],
    ["Para one.\n\nPara two.", "Para one.\n\nPara two."],
    ["Hi\nQ: what? A: this", "Hi\nQ: what? A: this"],
    ["Q: what?\nA: this", "Q: what?\nA: this"],
    ["My plan:\nMonday: gym\nTuesday: pizza", "My plan:\nMonday: gym\nTuesday: pizza"],
    ["Sure:\nname: friend\nage: 3", "Sure:\nname: friend\nage: 3"],
    ["name: friend", "name: friend"],
    ["Note: I'm kidding", "Note: I'm kidding"],
    ["Sure.\nNote: I'm kidding", "Sure.\nNote: I'm kidding"],
    ["Important: bring snacks", "Important: bring snacks"],
    ["Sure.\nImportant: bring snacks", "Sure.\nImportant: bring snacks"],
    ["Sure.\nNote (to self): buy milk", "Sure.\nNote (to self): buy milk"],
    ["Sure.\nStep 1: open the door", "Sure.\nStep 1: open the door"],
    ["Sure.\nName: Friend", "Sure.\nName: Friend"],
    // An unknown capitalised name with a plain colon is kept: it is more often a heading than a speaker.
    ["Sure.\nZorblax: hi", "Sure.\nZorblax: hi"],
    ["[1, 2, 3]", "[1, 2, 3]"],
    ["Sure.\n[1, 2, 3]", "Sure.\n[1, 2, 3]"],
    ["Sure.\n(1 + 2)", "Sure.\n(1 + 2)"],
    ["ratio: 3:1", "ratio: 3:1"],
    ["Time is 10:30, come on", "Time is 10:30, come on"],
    ["I said: no way", "I said: no way"],
    ["See joey://x", "See joey://x"],
    ["Sure.\nRoss://example", "Sure.\nRoss://example"],
    ["I told Ross: no way", "I told Ross: no way"],
    ["Sure. Ross: that was him", "Sure. Ross: that was him"],
    ["So **bold**: yes", "So **bold**: yes"],
    // Nothing inside a code block is a speaker or a direction.
    ["```\ncode: here\n```", "```\ncode: here\n```"],
    ["```\n    (1 + 2)\n```", "```\n    (1 + 2)\n```"],
    ["Here:\n```py\n(1 + 2)\nRoss: not a speaker\n[Scene: code]\n```\nDone.", "Here:\n```py\n(1 + 2)\nRoss: not a speaker\n[Scene: code]\n```\nDone."],
    ["Here:\n~~~\nFriend: x\n~~~\nRoss: hi", "Here:\n~~~\nFriend: x\n~~~"],
    ["```yaml\nname: friend\nitems: [1, 2, 3]\n```", "```yaml\nname: friend\nitems: [1, 2, 3]\n```"],
    // Line endings.
    ["Windows\r\nline\r\nends", "Windows\nline\nends"],
    ["Sure.\u2028Ross: hi", "Sure."],
    ["Sure.\u0085Ross: hi", "Sure."],
    // Empty results are possible; callers handle them.
    ["Friend:", ""],
    ["(Ross enters)", ""],
    ["   \n\n  ", ""],
  ])("%j → %j", (raw, expected) => {
    expect(clean(raw)).toBe(expected);
  });
});

describe("streamingView", () => {
  it.each([
    ["Frie", "", false],
    ["Friend: Oh", "", false], // "Oh" could still become "Oh (sighing):"
    ["Friend: Oh, I don't", "Oh, I don't", false],
    ["Friend:hi there", "hi there", false],
    ["Oh, I don't know.\nRo", "Oh, I don't know.", false],
    ["Oh, I don't know.\nRoss", "Oh, I don't know.", false],
    ["Oh, I don't know.\nRoss:", "Oh, I don't know.", false],
    ["Oh, I don't know.\nRoss: ", "Oh, I don't know.", true],
    ["Oh, I don't know.\nRoss: (ent", "Oh, I don't know.", true],
    ["Oh, I don't know.\nRoss:h", "Oh, I don't know.", true],
    ["Oh, I don't know.\n(Ross ent", "Oh, I don't know.", false],
    ["Oh, I don't know.\n(Ross enters)\n", "Oh, I don't know.", true],
    ["Oh, I don't know.\nwhat do you think, seriously", "Oh, I don't know.\nwhat do you think, seriously", false],
    // A name from the window, whatever characters it has, is held back until it cannot be a label.
    ["Friend: Sure thing...\nZ", "Sure thing...", false],
    ["Friend: Sure thing...\nZoë", "Sure thing...", false],
    ["Friend: Sure thing...\nZoë 🦄", "Sure thing...", false],
    ["Friend: Sure thing...\nZoë 🦄:", "Sure thing...", false],
    ["Friend: Sure thing...\nZoë 🦄: I'm back", "Sure thing...", true],
    ["Friend: Sure thing...\nZoë 🦄 is here, guys", "Sure thing...\nZoë 🦄 is here, guys", false],
    // The dressed-up forms too.
    ["Sure.\n\u200b", "Sure.", false],
    ["Sure.\n- Ro", "Sure.", false],
    ["Sure.\n> Ross", "Sure.", false],
    ["Sure.\nRoss：", "Sure.", false],
    ["Sure.\nRoss： h", "Sure.", true],
    ["Sure. **Ro", "Sure.", false],
    ["Oh sure. *", "Oh sure.", false],
    ["Sure. **Ross:**", "Sure.", false],
    ["Sure. **bold** move", "Sure. **bold** move", false],
    // Inside a code block everything shows at once.
    ["```\n(1 + 2", "```\n(1 + 2", false],
    ["```\nRoss", "```\nRoss", false],
  ])("%j shows %j (done: %s)", (raw, text, done) => {
    expect(streamingView(raw, opts)).toEqual({ text, done });
  });
});

// ---- Properties -----------------------------------------------------------------------------

/** Display names as Friend stores them: whatever users pick, through speakerName. */
const displayName = fc
  .oneof(
    fc.constantFrom("Zoë 🦄", "Alice", "Bob Smith", "🦄", "O'Brien", "Jean-Luc", "ＺＯＥ", "李雷", "x_x", "Dr. Who?", "Q", "Note", "- Zed", "Ross", "ü"),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }),
  )
  .map((raw) => speakerName(raw, "Friend"));

/** Names whose label can be recognised at all: one letter, digit or symbol besides list bullets and blanks. */
const recognisable = (name: string) => /[^\s\-+•‣◦▪–—\p{M}\p{Cf}]/u.test(name);

/** A label for `name` as a model (or someone dodging the cleaner) might write it. */
const labelFor = (name: fc.Arbitrary<string>) =>
  fc
    .tuple(
      fc.constantFrom("", "", "\u200b", "- ", "> ", "  ", "**", "* "),
      name,
      fc.constantFrom((n: string) => n, (n: string) => n.toUpperCase(), (n: string) => n.toLowerCase()),
      fc.constantFrom(": ", ":", "：", "**: ", ":** ", " (entering): ", "::"),
    )
    .map(([prefix, n, caseOf, colon]) => `${prefix}${caseOf(n)}${colon}`);

const fragment = (names: string[]) =>
  fc.oneof(
    { weight: 3, arbitrary: labelFor(fc.constantFrom(...names, "Friend", ...MAIN_CAST, "Gunther", "Mr. Treeger")) },
    {
      weight: 6,
      arbitrary: fc.constantFrom(
        "Oh, ", "I don't know", " what are you up for?", "😅", "🤔", "\n", "\n", "\n\n", " ", "Hey Ben!", "Could I BE", "any more",
        ":", "(", ")", "[", "]", "*", "**", "_", "Joey", " and ", "PHOE/MNCA: ", "Note: ", "Q: ", "Important: ", "(Ross enters)",
        "[Scene: Central Perk]", "*(laughs)*", "(1 + 2)", "[1, 2, 3]", "\n```\n", "\n~~~\n", "\n```py\n", "Zoë", "🦄", "\u200b",
        "：", "- ", "> ", "http://x", "\r\n", "\u2028",
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 8 }) },
  );

const scenario = fc
  .array(displayName, { maxLength: 4 })
  .chain((windowNames) =>
    fc.tuple(fc.constant(windowNames), fc.array(fragment(windowNames.length ? windowNames : ["Alice"]), { maxLength: 16 }).map((parts) => parts.join(""))),
  );

/** Normalised for comparison the way a reader would see it: compatibility forms folded, invisible characters gone. */
const plain = (text: string) => text.normalize("NFKC").replace(/\p{Cf}/gu, "").toLowerCase();

/** Whether `line` starts with `name`'s label, checked by the test's own simple reading. */
function startsWithLabel(line: string, name: string): boolean {
  const folded = plain(line);
  const target = plain(name);
  const undressed = folded.replace(/^(?:[\s>]|[-+•*]\s)*[*_]{0,3}/u, "");
  return [folded.trimStart(), undressed].some((start) => {
    if (!start.startsWith(target)) return false;
    const after = start.slice(target.length);
    return /^[\s*_]*(?:\([^)\n]*\))?[\s*_]*:(?!\/)/u.test(after);
  });
}

/** The lines of a cleaned reply that are not inside a code block. */
function proseLines(text: string): string[] {
  const lines: string[] = [];
  let fence: string | null = null;
  for (const line of text.split("\n")) {
    const marker = /^[ \t]*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === null && marker) fence = marker;
    else if (fence !== null && marker && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = null;
    else if (fence === null) lines.push(line);
  }
  return lines;
}

describe("cleaner properties", () => {
  it("never posts a line that starts with the label of a speaker in the window or the cast", () => {
    fc.assert(
      fc.property(scenario, ([windowNames, raw]) => {
        const options: CleanOptions = { personaName: "Friend", windowNames, cast };
        const speakers = [...windowNames.filter(recognisable), "Friend", ...MAIN_CAST];
        for (const line of proseLines(cleanReply(raw, options))) {
          for (const name of speakers) expect(startsWithLabel(line, name), `${JSON.stringify(line)} starts with ${name}'s label`).toBe(false);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it("never posts a stage-direction line after words", () => {
    fc.assert(
      fc.property(scenario, ([windowNames, raw]) => {
        const lines = proseLines(cleanReply(raw, { personaName: "Friend", windowNames, cast }));
        for (const line of lines.slice(1)) expect(line).not.toMatch(/^\s*[*_]*\s*(?:\(\s*\p{L}[^()]*\)|\[\s*\p{L}[^\]]*\])\s*[*_]*\s*$/u);
      }),
      { numRuns: 500 },
    );
  });

  it("is idempotent", () => {
    fc.assert(
      fc.property(scenario, ([windowNames, raw]) => {
        const options = { personaName: "Friend", windowNames, cast };
        expect(cleanReply(cleanReply(raw, options), options)).toBe(cleanReply(raw, options));
      }),
      { numRuns: 500 },
    );
  });

  it("only ever streams a prefix of the final text, however the text is chunked", () => {
    fc.assert(
      fc.property(scenario, fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 }), ([windowNames, raw], sizes) => {
        const options = { personaName: "Friend", windowNames, cast };
        const final = cleanReply(raw, options);
        const cleaner = new ReplyCleaner(options);
        const chars = [...raw]; // code points: a stream never splits a surrogate pair
        for (let at = 0, i = 0; at < chars.length; i++) {
          const size = sizes[i % sizes.length]!;
          const view = cleaner.push(chars.slice(at, at + size).join("")).view();
          at += size;
          expect(final.startsWith(view.text), `${JSON.stringify(raw)} showed ${JSON.stringify(view.text)}, final ${JSON.stringify(final)}`).toBe(true);
          if (view.done) expect(view.text).toBe(final);
        }
        expect(cleaner.text()).toBe(final);
      }),
      { numRuns: 1500 },
    );
  });
});

describe("pathological output", () => {
  // Each input is at least 100,000 characters: a cleaner that is quadratic anywhere (a backtracking
  // regex, re-reading the unfinished line on every chunk) would not finish within the test timeout.
  // No time is asserted; the size is the bound.
  const long = 100_000;
  it.each([
    ["one long word", "a".repeat(long), "a".repeat(long)],
    ["a long line of words", `Ok.\n${"Could I BE any more ".repeat(long / 20)}`, `Ok.\n${"Could I BE any more ".repeat(long / 20).trimEnd()}`],
    ["a run of joined names", `Ok.\n${"Joey and ".repeat(long / 9)}`, `Ok.\n${"Joey and ".repeat(long / 9).trimEnd()}`],
    ["open parentheses", `Ok.\n${"(".repeat(long)}`, `Ok.\n${"(".repeat(long)}`],
    ["slashes before a colon", `Ok.\n${"A/".repeat(long / 2)}: hi`, `Ok.\n${"A/".repeat(long / 2)}: hi`],
    ["spaces before a word", `Ok.\n${" ".repeat(long)}x`, `Ok.\n${" ".repeat(long)}x`],
    ["spaces then a parenthesis", `Ok.\n${" ".repeat(long)}(x`, `Ok.\n${" ".repeat(long)}(x`],
    ["persona labels", `${"Friend: ".repeat(long / 8)}hi`, "hi"],
    ["bold markers", `Ok.\n${"** ".repeat(long / 3)}`, `Ok.\n${"** ".repeat(long / 3).trimEnd()}`],
    ["zero-width characters", `Ok.\n${"\u200b".repeat(long)}`, `Ok.\n${"\u200b".repeat(long)}`],
    ["emoji", `Ok.\n${"🦄".repeat(long / 2)}`, `Ok.\n${"🦄".repeat(long / 2)}`],
    ["many short lines", "Sure.\nline\n".repeat(long / 12), "Sure.\nline\n".repeat(long / 12).trim()],
  ])("cleans %s", (_label, raw, expected) => {
    const cleaner = new ReplyCleaner(opts);
    for (let i = 0; i < raw.length; i += 7) {
      cleaner.push(raw.slice(i, i + 7));
      if (i % 7000 === 0) expect(expected.startsWith(cleaner.view().text)).toBe(true); // shown about once a second, not once a chunk
    }
    // Compared as a boolean: a failing diff of 100,000-character strings takes longer than the cleaning.
    expect(cleaner.text() === expected).toBe(true);
  });
});

describe("a persona from the cast", () => {
  const joey = { personaName: "Joey", windowNames: ["Alice"], cast };
  it.each([
    ["Joey: How you doin'?", "How you doin'?"],
    ["Joey Tribbiani: How you doin'?", "How you doin'?"],
    ["joseph tribbiani: hey", "hey"],
    ["**Joey:** hey", "hey"],
    // Friend is just another speaker now: its line is a follow-on.
    ["Sure.\nFriend: and me", "Sure."],
    ["Friend: hi", ""],
    ["Sure.\nRoss: (entering) hi", "Sure."],
  ])("as Joey, %j → %j", (raw, expected) => {
    expect(cleanReply(raw, joey)).toBe(expected);
  });

  it("for any persona of the cast, never posts a line under another cast member's label, and strips its own", () => {
    fc.assert(
      fc.property(fc.constantFrom(...cast.map((m) => m.name)), scenario, (personaName, [windowNames, raw]) => {
        const text = cleanReply(raw, { personaName, windowNames, cast });
        for (const line of proseLines(text)) {
          for (const name of cast.map((m) => m.name)) expect(startsWithLabel(line, name), `${JSON.stringify(line)} starts with ${name}'s label`).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });
});
