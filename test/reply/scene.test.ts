import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadSettings } from "../../src/config/settings.ts";
import { cleanReply } from "../../src/reply/clean.ts";
import { sceneLines } from "../../src/reply/scene.ts";

const { cast } = loadSettings();
const options = { personaName: "Friend", windowNames: ["Alice"], cast, maxLines: 3 };
const scene = (raw: string, extra: Partial<typeof options> = {}) => sceneLines(raw, { ...options, ...extra }).map((l) => `${l.speaker.name}: ${l.text}`);

describe("scene lines", () => {
  it.each([
    ["Oh, I don't know.\nRoss: (entering) Hey Ben!\n\nMonica: Hi!", ["Ross: *(entering)* Hey Ben!", "Monica: Hi!"]],
    ["Sure.\nJoey Tribbiani (eating): How you doin'?", ["Joey: *(eating)* How you doin'?"]],
    ["Sure.\nRoss: one\nRachel: two\nMonica: three\nPhoebe: four", ["Ross: one", "Rachel: two", "Monica: three"]],
    ["Sure.\nRoss: hi\n(Ross leaves)\nRachel: bye", ["Ross: hi", "Rachel: bye"]],
    // Never for a user, by the window's name or the name a character-named user really has.
    ["Sure.\nRoss: hi\nAlice: I agree!\nRachel: bye", ["Ross: hi"]],
    ["Sure.\nAlice: I agree!\nRoss: hi", []],
    // Never an unknown speaker, nor anything after one.
    ["Sure.\nGunther: Rachel...\nRoss: hi", []],
    ["Sure.\nRoss: hi\nMr. Treeger: out!\nMonica: Hi!", ["Ross: hi"]],
    ["Sure.\nRoss: hi\nand an unlabelled line\nMonica: Hi!", ["Ross: hi"]],
    // Anything after the first cut: the reply was cut before the scene's first label.
    ["Sure.\n(Ross enters)\nRoss: hi", []],
    ["Sure. **Ross:** hi\nMonica: Hi!", []],
    // An inline label inside a scene line ends the scene there.
    ["Sure.\nRoss: hi **Monica:** hey\nRachel: bye", ["Ross: hi"]],
    ["Just a reply.", []],
    ["Ross: hey", ["Ross: hey"]],
  ])("%j → %j", (raw, expected) => {
    expect(scene(raw)).toEqual(expected);
  });

  it("for a persona from the cast, Friend is just another character and the persona's own lines are allowed", () => {
    expect(scene("Yeah.\nFriend: me too\nJoey: again", { personaName: "Joey" })).toEqual(["Friend: me too", "Joey: again"]);
  });

  it("a user whose name is a character's (shown as User Ross) is never spoken for", () => {
    expect(scene("Yeah.\nMonica: hi\nRoss: I'm the user", { windowNames: ["User Ross"] })).toEqual(["Monica: hi"]);
  });

  it("never attributes a line to a user or to anyone outside the cast, whatever the model writes (property)", () => {
    const userNames = ["Alice", "Bob Smith", "User Ross"];
    const names = [...cast.map((m) => m.name), ...userNames, "Ross", "Gunther", "Janice", "Mr. Treeger", "All", "alice", "ALICE"];
    const line = fc.oneof(
      fc.tuple(fc.constantFrom(...names), fc.constantFrom("", " (entering)", " (to Alice)"), fc.constantFrom(":", "：", ":**"), fc.string({ maxLength: 20 })).map(([n, d, c, t]) => `${n}${d}${c} ${t}`),
      fc.string({ maxLength: 30 }),
      fc.constant("(Ross enters)"),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 8 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom(...cast.map((m) => m.name)), (lines, maxLines, personaName) => {
        const raw = lines.join("\n");
        const windowNames = userNames;
        const kept = sceneLines(raw, { personaName, windowNames, cast, maxLines });
        expect(kept.length).toBeLessThanOrEqual(maxLines);
        for (const l of kept) {
          expect(cast).toContain(l.speaker);
          expect(["alice", "bob smith", "user ross", "ross"]).not.toContain(l.speaker.name.toLowerCase());
          expect(l.text).not.toBe("");
        }
        // Scene or not, the reply is what the cleaner says.
        expect(cleanReply(raw, { personaName, windowNames, cast })).toBe(cleanReply(raw, { personaName, windowNames, cast }));
      }),
      { numRuns: 1000 },
    );
  });
});
