import { describe, expect, it } from "vitest";
import { classifyScriptLine, isEpisodeTitle, splitRunOnLine, stripDirections } from "../../src/data/parsers/script-lines.ts";

describe("classifyScriptLine: one line of the Kaggle file, one quirk per row", () => {
  it.each([
    ["an upper-cased episode title", "THE ONE WHERE MONICA BUYS A LABEL MAKER (THE UNCUT VERSION)", [{ kind: "episode title", title: "THE ONE WHERE MONICA BUYS A LABEL MAKER (THE UNCUT VERSION)" }]],
    ["a numbered episode title", "107 THE ONE WITH THE BLACKOUT SANDWICH", [{ kind: "episode title", title: "107 THE ONE WITH THE BLACKOUT SANDWICH" }]],
    ["a title with a colon", "THE ONE WITH THE PROPOSAL: PART 2", [{ kind: "episode title", title: "THE ONE WITH THE PROPOSAL: PART 2" }]],
    ["Written by credits", "Written by: Pat Testwriter", [{ kind: "skip", reason: "credits" }]],
    ["Teleplay by credits", "Teleplay by: Sam Sampleton & Alex Example", [{ kind: "skip", reason: "credits" }]],
    ["Transcribed by credits", "Transcribed by:  Somebody", [{ kind: "skip", reason: "credits" }]],
    ["a scene heading", "[Scene: Central Perk, the gang is on the couch.]", [{ kind: "scene heading" }]],
    ["a time lapse", "[Time Lapse]", [{ kind: "scene heading" }]],
    ["a stage direction", "(They all stare, bemused.)", [{ kind: "skip", reason: "stage direction" }]],
    ["a nested stage direction", "(He (sort of) leaves.)", [{ kind: "skip", reason: "stage direction" }]],
    ["a writer note", "{Note: this scene was cut for time.}", [{ kind: "skip", reason: "writer note" }]],
    ["End", "End", [{ kind: "end marker" }]],
    ["THE END", "THE END", [{ kind: "end marker" }]],
    ["End with a full stop", "End.", [{ kind: "end marker" }]],
    ["a blank line", "   ", []],
    ["plain dialogue", "Monica: There's really nothing to say!", [{ kind: "dialogue", speakers: ["Monica"], text: "There's really nothing to say!" }]],
    ["words whose apostrophes were deleted", "Joey: I couldnt, I wasnt there.", [{ kind: "dialogue", speakers: ["Joey"], text: "I couldnt, I wasnt there." }]],
    ["a direction in the label", "Joey (to Rachel): Are you gonna eat that?", [{ kind: "dialogue", speakers: ["Joey"], text: "Are you gonna eat that?" }]],
    ["an abbreviated label", "MNCA: Coasters, people!", [{ kind: "dialogue", speakers: ["Monica"], text: "Coasters, people!" }]],
    ["RACH", "RACH: Nope.", [{ kind: "dialogue", speakers: ["Rachel"], text: "Nope." }]],
    ["two speakers with a slash", "PHOE/MNCA: Twelve!", [{ kind: "dialogue", speakers: ["Phoebe", "Monica"], text: "Twelve!" }]],
    ["a double colon", "Mr. Treeger:: Who did this?", [{ kind: "dialogue", speakers: ["Mr. Treeger"], text: "Who did this?" }]],
    ["All", "All: Not us!", [{ kind: "dialogue", speakers: ["All"], text: "Not us!" }]],
    ["All with an exception", "All (except Rachel): Not us.", [{ kind: "dialogue", speakers: ["All"], text: "Not us." }]],
    ["a direction merged into the label", "Rachel turns to Ross: You did, didnt you?", [{ kind: "dialogue", speakers: ["Rachel"], text: "You did, didnt you?" }]],
    ["a direction inside the line", "Ross: I was (pointing at himself) not here!", [{ kind: "dialogue", speakers: ["Ross"], text: "I was not here!" }]],
    ["a line that is only a direction", "Joey: (shrugs)", [{ kind: "skip", reason: "only stage directions" }]],
    ["prose with no speaker", "The phone rings and nobody answers it.", [{ kind: "skip", reason: "no speaker label" }]],
    ["a colon deep inside prose", "Everybody in the whole place turns around to look: silence.", [{ kind: "skip", reason: "no speaker label" }]],
    ["prose with two-space gaps, counted once", "The phone rings.  Nobody answers.  It rings again.", [{ kind: "skip", reason: "no speaker label" }]],
    ["a lower-case word before a colon", "anyway: back to the couch", [{ kind: "skip", reason: "no speaker label" }]],
    ["a shout that lost its speaker", "OH MY GOD!", [{ kind: "skip", reason: "no speaker label" }]],
  ])("%s", (_quirk, line, expected) => {
    expect(classifyScriptLine(line)).toEqual(expected);
  });

  it("splits a run-on line with two-space-separated ALL-CAPS speakers into turns", () => {
    const line = "CHANDLER: Waaa-aaah.  JOEY: What?  [Scene: The hallway.]  CHANDLER: Hey.  MONICA and PHOEBE: Hey.";
    expect(classifyScriptLine(line)).toEqual([
      { kind: "dialogue", speakers: ["Chandler"], text: "Waaa-aaah." },
      { kind: "dialogue", speakers: ["Joey"], text: "What?" },
      { kind: "scene heading" },
      { kind: "dialogue", speakers: ["Chandler"], text: "Hey." },
      { kind: "dialogue", speakers: ["Monica", "Phoebe"], text: "Hey." },
    ]);
  });

  it("keeps two-space typewriter gaps inside one turn as one turn", () => {
    expect(classifyScriptLine("Ross: Okay.  Listen: we need to talk.  Now.")).toEqual([
      { kind: "dialogue", speakers: ["Ross"], text: "Okay. Listen: we need to talk. Now." },
    ]);
  });

  it("drops directions between turns of a run-on line, counting each", () => {
    expect(classifyScriptLine("ROSS (to Monica): Did you  hide it?  (He looks around.)  MONICA: Sink!")).toEqual([
      { kind: "dialogue", speakers: ["Ross"], text: "Did you hide it?" },
      { kind: "skip", reason: "stage direction" },
      { kind: "dialogue", speakers: ["Monica"], text: "Sink!" },
    ]);
  });
});

describe("isEpisodeTitle", () => {
  it.each([
    ["THE ONE WITH THE COUCH", true],
    ["1001 THE ONE WITH THE COUCH", true],
    ["THE LAST ONE", true],
    ["THE ONE WITH THE PROPOSAL: PART 2", true],
    ["OH MY GOD!", false],
    ["JOEY: HEY!", false],
    ["[SCENE: CENTRAL PERK]", false],
    ["The One With The Couch", false],
    ["A", false],
  ])("%j → %s", (line, expected) => {
    expect(isEpisodeTitle(line)).toBe(expected);
  });
});

describe("splitRunOnLine", () => {
  it.each([
    ["A: one.  B: two.", ["A: one.", "B: two."]],
    ["A: one.     B: two.", ["A: one.", "B: two."]],
    ["[Scene: Perk.  Later.]  A: hi", ["[Scene: Perk.  Later.]", "A: hi"]],
    ["A: (pause.  long pause)  hi", ["A: (pause.  long pause)", "hi"]],
    ["A: single spaces only", ["A: single spaces only"]],
  ])("%j", (line, expected) => {
    expect(splitRunOnLine(line)).toEqual(expected);
  });
});

describe("stripDirections", () => {
  it.each([
    ["Hi (to Ross) there.", "Hi there."],
    ["(entering) Hey!", "Hey!"],
    ["Hey (waves) !", "Hey!"],
    ["I mean [aside] really.", "I mean really."],
    ["Wait {writer: fix} what?", "Wait what?"],
    ["Nested (he (really) leaves) ok", "Nested ok"],
    ["Unclosed (he walks out", "Unclosed"],
    ["Stray ) bracket", "Stray bracket"],
    ["(to Ross), fine.", "fine."],
    ["(all of it)", ""],
    ["  lots   of   space  ", "lots of space"],
  ])("%j → %j", (text, expected) => {
    expect(stripDirections(text)).toBe(expected);
  });
});
