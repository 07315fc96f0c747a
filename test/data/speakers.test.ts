import { describe, expect, it } from "vitest";
import { mainCharacterNamed, normaliseSpeakerLabel, soleMainSpeaker } from "../../src/data/speakers.ts";

describe("normaliseSpeakerLabel", () => {
  it.each([
    ["Monica", ["Monica"]],
    ["MONICA", ["Monica"]],
    ["MNCA", ["Monica"]],
    ["RACH", ["Rachel"]],
    ["Rach", ["Rachel"]],
    ["PHOE", ["Phoebe"]],
    ["CHAN", ["Chandler"]],
    ["Joey Tribbiani", ["Joey"]],
    ["Monica Geller", ["Monica"]],
    ["Phoebe Buffay", ["Phoebe"]],
    ["Chandler Bing", ["Chandler"]],
    ["Joey (to Rachel)", ["Joey"]],
    ["ROSS (to Monica)", ["Ross"]],
    ["Mr. Treeger", ["Mr. Treeger"]],
    ["Mr. Treeger::", ["Mr. Treeger"]],
    ["MR. TREEGER", ["Mr. Treeger"]],
    ["PHOE/MNCA", ["Phoebe", "Monica"]],
    ["MONICA and PHOEBE", ["Monica", "Phoebe"]],
    ["Ross & Rachel", ["Ross", "Rachel"]],
    ["Joey, Chandler and Ross", ["Joey", "Chandler", "Ross"]],
    ["All", ["All"]],
    ["ALL", ["All"]],
    ["All (except Rachel)", ["All"]],
    ["Everyone", ["All"]],
    ["Rachel turns to Ross", ["Rachel"]],
    ["Chandler (reading) turns around", ["Chandler"]],
    ["Gunther", ["Gunther"]],
    ["RACHEL'S DATE", ["Rachel's Date"]],
  ])("%s → %j", (label, expected) => {
    expect(normaliseSpeakerLabel(label)).toEqual(expected);
  });

  it.each(["", "   ", "(to Ross)", "[aside]"])("%j has no speaker", (label) => {
    expect(normaliseSpeakerLabel(label)).toBeUndefined();
  });
});

describe("mainCharacterNamed", () => {
  it.each([
    ["mnca", "Monica"],
    [" Ross  Geller ", "Ross"],
    ["pheebs", "Phoebe"],
    ["Gunther", undefined],
    ["Ben", undefined],
  ])("%j → %s", (spelling, expected) => {
    expect(mainCharacterNamed(spelling)).toBe(expected);
  });
});

describe("soleMainSpeaker", () => {
  it.each([
    [["Joey"], "Joey"],
    [["Gunther"], undefined],
    [["Monica", "Phoebe"], undefined],
    [["All"], undefined],
    [[], undefined],
  ])("%j → %s", (speakers, expected) => {
    expect(soleMainSpeaker(speakers)).toBe(expected);
  });
});
