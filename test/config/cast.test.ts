import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS_PATH, loadSettings } from "../../src/config/settings.ts";
import { castSpellings, findCastMember, MAIN_CHARACTERS } from "../../src/core/cast.ts";
import { personaAs } from "../../src/core/persona.ts";

const raw = JSON.parse(readFileSync(DEFAULT_SETTINGS_PATH, "utf8"));

/** Writes a settings file with `change` applied to a copy of the default one. */
function settingsWith(change: (s: any) => void): string {
  const copy = structuredClone(raw);
  change(copy);
  const path = join(mkdtempSync(join(tmpdir(), "friend-cast-")), "friend.json");
  writeFileSync(path, JSON.stringify(copy));
  return path;
}

describe("the cast in config", () => {
  it("defaults to Friend and the six main characters, each with a description", () => {
    const { cast, persona } = loadSettings();
    expect(cast.map((m) => m.name).sort()).toEqual([persona.name, ...MAIN_CHARACTERS].sort());
    for (const member of cast) expect(member.description.length).toBeGreaterThan(0);
  });

  it("takes an operator's extra character, found by any spelling", () => {
    const path = settingsWith((s) => s.cast.push({ name: "Gunther", aliases: ["Gunther Central Perk"], avatarUrl: "https://example.com/g.png", description: "You run Central Perk." }));
    const { cast } = loadSettings(path);
    expect(findCastMember(cast, "gunther central perk")?.name).toBe("Gunther");
    expect(findCastMember(cast, "JOEY")?.name).toBe("Joey");
    // A main character's transcript spellings count as its aliases.
    expect(findCastMember(cast, "joseph tribbiani")?.name).toBe("Joey");
    expect(findCastMember(cast, "Janice")).toBeUndefined();
  });

  it.each([
    ["a name that is not one capitalised word", (s: any) => (s.cast[1].name = "ross geller"), /cast\.1\.name/],
    ["a spelling shared by two characters", (s: any) => s.cast[1].aliases.push("Joey"), /"Joey" already names/],
    ["an alias with a colon", (s: any) => s.cast[1].aliases.push("Ross: the"), /cast\.1\.aliases\.\d/],
    ["an avatar that is not https", (s: any) => (s.cast[1].avatarUrl = "http://x.test/a.png"), /cast\.1\.avatarUrl/],
    ["no entry for the persona", (s: any) => (s.cast = s.cast.filter((m: any) => m.name !== "Friend")), /cast.*persona\.name/],
    ["no cast at all", (s: any) => delete s.cast, /cast/],
  ])("refuses %s, naming the field", (_what, change, message) => {
    expect(() => loadSettings(settingsWith(change))).toThrow(message);
  });

  it("speaks as a character with the base prompt renamed, the description added, and the base lines kept", () => {
    const { cast, persona } = loadSettings();
    const joey = personaAs(persona, findCastMember(cast, "Joey")!);
    expect(joey.name).toBe("Joey");
    expect(joey.systemPrompt).toContain("Your name is Joey.");
    expect(joey.systemPrompt).toContain("Respond as Joey.");
    expect(joey.systemPrompt).not.toMatch(/\bFriend\b(?!s)/);
    expect(joey.systemPrompt.endsWith(findCastMember(cast, "Joey")!.description)).toBe(true);
    expect(joey.errorReply).toBe(persona.errorReply);
    expect(personaAs(persona, findCastMember(cast, "Friend")!)).toBe(persona);
    expect(castSpellings(findCastMember(cast, "Monica")!)).toEqual(expect.arrayContaining(["Monica", "mnca", "monica geller-bing"]));
  });
});
