import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../../src/data/errors.ts";
import { parseCsv, parseCsvText } from "../../src/data/parsers/csv.ts";
import { parseEmorynlp, parseEmorynlpJson } from "../../src/data/parsers/emorynlp.ts";
import { detectFormat, readTranscript } from "../../src/data/parsers/formats.ts";
import { parseEpisodeFolder, parseKaggleFile, parseScriptText } from "../../src/data/parsers/script.ts";
import { fixture, sceneScript, tempFolder } from "./helpers/fixtures.ts";

describe("Kaggle single file", () => {
  it("reads episodes, scenes and every speaker quirk of the sample", () => {
    const transcript = parseKaggleFile(fixture("kaggle-sample.txt"));
    const first = "THE ONE WITH THE BROKEN FOOSBALL TABLE (THE EXTENDED CUT)";
    const second = "2 THE ONE WHERE JOEY LEARNS TO KNIT";
    expect(sceneScript(transcript.scenes)).toEqual([
      {
        episode: first,
        lines: [
          "Monica: Okay, who moved my coasters? I had a system!",
          "Chandler: Could there BE more coasters in this apartment?",
          "Joey: Do you think she counts them?",
          "Rachel: I know she counts them.",
          "Monica: I do not count them. There are twelve.",
          "Phoebe+Monica: Twelve!",
          "Mr. Treeger: Who left the trash chute open again?",
          "All: Not us!",
          "All: Definitely not us.",
          "Rachel: You left it open, didnt you?",
          "Ross: I couldnt have, I wasnt even here!",
        ],
      },
      { episode: first, lines: ["Phoebe: So I told the guy, my aura is not for sale.", "Joey: How much did he offer?"] },
      { episode: second, lines: ["Chandler: Pass the salad.", "Joey: What salad?", "Chandler: Exactly."] },
      { episode: second, lines: ["Ross: Hey.", "Monica+Phoebe: Hey.", "Ross: Did you hide my fossil?", "Monica: It was in the sink!"] },
    ]);
  });

  it("counts what it skipped, by reason", () => {
    expect(parseKaggleFile(fixture("kaggle-sample.txt")).skipped).toEqual({
      "episode title": 2,
      credits: 2,
      "scene heading": 4,
      "stage direction": 2,
      "writer note": 1,
      "end marker": 2,
      "no speaker label": 1,
      "only stage directions": 1,
    });
  });

  it("names scenes before the first title after the file", () => {
    expect(parseScriptText("Joey: Hi.\nRoss: Hey.", "Friends_Transcript.txt").scenes[0]?.episode).toBe("Friends_Transcript.txt");
  });

  it("cuts scenes at End even without a new title", () => {
    const { scenes } = parseScriptText("Joey: One.\nEnd\nRoss: Two.", "x");
    expect(sceneScript(scenes).map((s) => s.lines)).toEqual([["Joey: One."], ["Ross: Two."]]);
  });

  it("reads Windows and old Mac line endings", () => {
    const { scenes } = parseScriptText("Joey: One.\r\nRoss: Two.\rMonica: Three.", "x");
    expect(sceneScript(scenes)[0]?.lines).toEqual(["Joey: One.", "Ross: Two.", "Monica: Three."]);
  });
});

describe("one .txt per episode", () => {
  it("names episodes after their files and ignores other files", () => {
    const transcript = parseEpisodeFolder(fixture("episodes"));
    expect(sceneScript(transcript.scenes)).toEqual([
      {
        episode: "S01E01 Monica Gets A Roommate",
        lines: [
          "Rachel: Is it supposed to make that noise?",
          "Gunther: No.",
          "Ross: Okay, nobody panic. I read about this once.",
          "Chandler: In a book about coffee machines, or a book about panicking?",
        ],
      },
      { episode: "S01E01 Monica Gets A Roommate", lines: ["Monica: I'm just saying, a label maker is a gift.", "Phoebe: A gift for who?"] },
      {
        episode: "S01E02 The Sonogram At The End",
        lines: ["Ross: She wants me there. At the sonogram. With her wife.", "Joey: So go! Free ultrasound!", "Chandler: That's not how any of that works."],
      },
    ]);
    expect(transcript.skipped).toEqual({ "episode title": 1, credits: 1, "scene heading": 3, "end marker": 1 });
  });

  it("sorts episodes numerically, so E10 comes after E9", () => {
    const dir = tempFolder();
    try {
      writeFileSync(join(dir.path, "S01E10 Ten.txt"), "Ross: ten");
      writeFileSync(join(dir.path, "S01E9 Nine.txt"), "Ross: nine");
      expect(parseEpisodeFolder(dir.path).scenes.map((s) => s.episode)).toEqual(["S01E9 Nine", "S01E10 Ten"]);
    } finally {
      dir.remove();
    }
  });
});

describe("emorynlp JSON", () => {
  it("maps full names, skips stage directions and malformed utterances, keeps scenes", () => {
    const transcript = parseEmorynlp(fixture("emorynlp-season.json"));
    expect(sceneScript(transcript.scenes)).toEqual([
      {
        episode: "s01_e01",
        lines: ["Monica: Has anyone seen my good spatula?", "Joey: Define good.", "Chandler: He used it for the pizza.", "Gunther: Your order is ready."],
      },
      { episode: "s01_e01", lines: ["Rachel: I got the job!", "Monica+Phoebe: Yay!", "Ross: That's great, what job?"] },
      { episode: "s01_e02", lines: ["Phoebe: My grandmother's lamp is haunted.", "Ross: Lamps can't be haunted, Pheebs."] },
    ]);
    expect(transcript.skipped).toEqual({ "stage direction": 1, "malformed entry": 1 });
  });

  it("accepts a list of seasons and a folder of season files", () => {
    const season = { season_id: "s02", episodes: [{ episode_id: "s02_e01", scenes: [{ utterances: [{ speakers: ["Ross Geller"], transcript: "Hi." }] }] }] };
    expect(parseEmorynlpJson(JSON.stringify([season, season]), "x.json").scenes).toHaveLength(2);
    const dir = tempFolder();
    try {
      writeFileSync(join(dir.path, "friends_season_02.json"), JSON.stringify(season));
      writeFileSync(join(dir.path, "friends_season_03.json"), JSON.stringify(season));
      expect(parseEmorynlp(dir.path).scenes).toHaveLength(2);
    } finally {
      dir.remove();
    }
  });

  it("an utterance with no speakers is skipped with a count", () => {
    const json = { episodes: [{ episode_id: "e", scenes: [{ utterances: [{ speakers: [], transcript: "Who said this?" }, { speakers: ["Joey Tribbiani"], transcript: "Me." }] }] }] };
    const transcript = parseEmorynlpJson(JSON.stringify(json), "x.json");
    expect(transcript.skipped).toEqual({ "no speaker label": 1 });
    expect(sceneScript(transcript.scenes)[0]?.lines).toEqual(["Joey: Me."]);
  });

  it("broken JSON is an error naming the file and line", () => {
    expect(() => parseEmorynlpJson('{\n  "episodes": [\n    {,\n  ]\n}', "season.json")).toThrowError(/^season\.json:3: not valid JSON/);
  });

  it("JSON of another shape is an error naming the file", () => {
    expect(() => parseEmorynlpJson('{"utterances": []}', "season.json")).toThrowError(/^season\.json:1: not emorynlp JSON/);
  });
});

describe("CSV with speaker and text columns", () => {
  it("reads quoted fields, cuts scenes on the scene and episode columns, skips bad rows", () => {
    const transcript = parseCsv(fixture("lines.csv"));
    expect(sceneScript(transcript.scenes)).toEqual([
      { episode: "S02E05", lines: ["Monica: Okay, everybody, hands off the turkey.", "Joey: But it's looking at me, Mon.", 'Chandler: He said "looking", Mon. Let it go.'] },
      { episode: "S02E05", lines: ["Ross: I have a theory about this, and it is long.", "Rachel: Of course you do."] },
      { episode: "S02E06", lines: ["Phoebe: I'm back from Vegas!", "Joey: You went to Vegas?"] },
    ]);
    expect(transcript.skipped).toEqual({ "stage direction": 1, "malformed entry": 1 });
  });

  it.each([
    ["tab-separated", "character\tline\nRoss\tHi.\nJoey\tHey.\n"],
    ["semicolon-separated", "Speaker;Text\nRoss;Hi.\nJoey;Hey.\n"],
    ["quoted header, CRLF", '"speaker","text"\r\nRoss,Hi.\r\nJoey,Hey.\r\n'],
  ])("reads a %s file", (_name, text) => {
    expect(sceneScript(parseCsvText(text, "x.csv").scenes)).toEqual([{ episode: "x.csv", lines: ["Ross: Hi.", "Joey: Hey."] }]);
  });

  it("rows without a speaker cut scenes when they are scene headings", () => {
    const { scenes } = parseCsvText("speaker,text\nRoss,Hi.\n,[Scene: Later.]\nJoey,Hey.\n", "x.csv");
    expect(scenes.map((s) => s.lines.length)).toEqual([1, 1]);
  });

  it("a missing speaker or text column is an error naming line 1", () => {
    expect(() => parseCsvText("who,what\nRoss,Hi\n", "lines.csv")).toThrowError(/^lines\.csv:1: the header row needs a speaker column/);
  });

  it("an unclosed quote is an error naming the line it opens on", () => {
    expect(() => parseCsvText('speaker,text\nRoss,Hi\nJoey,"Hey\nMonica,Yo\n', "lines.csv")).toThrowError(/^lines\.csv:3: a quoted field is never closed/);
  });
});

describe("bad input", () => {
  let dir: ReturnType<typeof tempFolder>;
  beforeEach(() => {
    dir = tempFolder();
  });
  afterEach(() => dir.remove());

  it("a line of invalid UTF-8 is skipped and counted, the rest is read", () => {
    const file = join(dir.path, "script.txt");
    writeFileSync(file, Buffer.concat([Buffer.from("Joey: Hi.\nRoss: caf"), Buffer.from([0xe9, 0x21]), Buffer.from("\nMonica: Bye.\n")]));
    const transcript = parseKaggleFile(file);
    expect(sceneScript(transcript.scenes)[0]?.lines).toEqual(["Joey: Hi.", "Monica: Bye."]);
    expect(transcript.skipped).toEqual({ "invalid UTF-8": 1 });
  });

  it("a binary file is an error naming the file and line", () => {
    const file = join(dir.path, "script.txt");
    writeFileSync(file, Buffer.concat([Buffer.from("Joey: Hi.\nRoss: Hey.\n"), Buffer.from([0, 1, 2])]));
    expect(() => parseKaggleFile(file)).toThrowError(`${file}:3: binary data (a NUL byte); is this a transcript?`);
  });

  it("a missing input is an error naming it", () => {
    const missing = join(dir.path, "nope.txt");
    expect(() => readTranscript(missing, "auto")).toThrowError(`${missing}: cannot read (no such file or folder)`);
  });

  it("input with no dialogue is an error that suggests checking the format", () => {
    const file = join(dir.path, "notes.txt");
    writeFileSync(file, "just some notes\nnothing to see\n");
    expect(() => readTranscript(file, "auto")).toThrowError(/no dialogue lines found when read as kaggle; check --format/);
  });

  it("errors are InputErrors that keep file and line", () => {
    try {
      parseCsvText("who,what\n", "lines.csv");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      expect(err).toMatchObject({ file: "lines.csv", line: 1, exitCode: 1 });
    }
  });

  it("an episodes folder given as a file, or a Kaggle file given as a folder, is a usage error", () => {
    expect(() => readTranscript(fixture("kaggle-sample.txt"), "episodes")).toThrowError(/is a file; --format episodes reads a folder/);
    expect(() => readTranscript(fixture("episodes"), "kaggle")).toThrowError(/is a folder; --format kaggle reads one file/);
  });
});

describe("--format auto", () => {
  let dir: ReturnType<typeof tempFolder>;
  beforeEach(() => {
    dir = tempFolder();
  });
  afterEach(() => dir.remove());

  it.each([
    ["kaggle-sample.txt", "kaggle"],
    ["episodes", "episodes"],
    ["emorynlp-season.json", "emorynlp"],
    ["lines.csv", "csv"],
  ])("detects %s as %s", (name, format) => {
    expect(detectFormat(fixture(name))).toBe(format);
  });

  it.each([
    ["JSON without a .json name", "season.data", '  {"season_id": "s01", "episodes": []}', "emorynlp"],
    ["a CSV without a .csv name", "lines.txt", "speaker,text\nRoss,Hi\n", "csv"],
    ["a script starting with a scene heading", "script", "[Scene: Central Perk]\nRoss: Hi\n", "kaggle"],
  ])("detects %s by its content", (_name, file, content, format) => {
    writeFileSync(join(dir.path, file), content);
    expect(detectFormat(join(dir.path, file))).toBe(format);
  });

  it("detects folders of .json and .csv files", () => {
    mkdirSync(join(dir.path, "json"));
    writeFileSync(join(dir.path, "json", "s01.json"), "{}");
    mkdirSync(join(dir.path, "csv"));
    writeFileSync(join(dir.path, "csv", "a.csv"), "speaker,text\n");
    expect(detectFormat(join(dir.path, "json"))).toBe("emorynlp");
    expect(detectFormat(join(dir.path, "csv"))).toBe("csv");
  });

  it("a folder with no transcripts is an error", () => {
    expect(() => detectFormat(dir.path)).toThrowError(/no \.txt, \.json or \.csv transcript files/);
  });
});
