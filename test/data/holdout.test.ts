import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.ts";
import type { EvalItem } from "../../src/data/eval-items.ts";
import { chooseHoldout, lineKey, parseHoldoutOption, splitHoldout } from "../../src/data/holdout.ts";
import { readTranscript } from "../../src/data/parsers/formats.ts";
import type { Scene } from "../../src/data/transcript.ts";
import { captureIo } from "./helpers/capture-io.ts";
import { fixture, tempFolder } from "./helpers/fixtures.ts";
import { syntheticKaggleTranscript } from "./helpers/synthetic-transcript.ts";

const dir = tempFolder();
afterAll(() => dir.remove());

async function friend(argv: string[]) {
  const captured = captureIo({ cwd: dir.path });
  const code = await main(argv, captured.io);
  return { code, out: captured.out, err: captured.err };
}

const readJsonl = <T>(name: string): T[] =>
  readFileSync(join(dir.path, name), "utf8")
    .trimEnd()
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T);

/** The same synthetic show in each input format: one Kaggle file, a folder of episodes, a CSV, emorynlp JSON. */
function writeFormats(): Record<string, string> {
  const kaggle = join(dir.path, "show.txt");
  writeFileSync(kaggle, syntheticKaggleTranscript({ lines: 2500, seed: 11, runOnEvery: 1000 }));
  const scenes = readTranscript(kaggle, "kaggle").scenes;
  const episodes = [...new Set(scenes.map((s) => s.episode))];
  const folder = join(dir.path, "episodes");
  mkdirSync(folder);
  episodes.forEach((episode, e) => {
    const lines = [episode];
    for (const scene of scenes.filter((s) => s.episode === episode)) lines.push("[Scene: somewhere.]", ...scene.lines.map((l) => `${l.speakers.join(" and ")}: ${l.text}`));
    writeFileSync(join(folder, `S01E${String(e + 1).padStart(2, "0")}.txt`), `${lines.join("\n")}\nEnd\n`);
  });
  const csv = join(dir.path, "show.csv");
  const quote = (text: string) => `"${text.replace(/"/g, '""')}"`;
  const rows = ["episode,scene,speaker,text"];
  scenes.forEach((scene, i) => rows.push(...scene.lines.map((l) => [quote(scene.episode), i, quote(l.speakers.join(" and ")), quote(l.text)].join(","))));
  writeFileSync(csv, `${rows.join("\n")}\n`);
  const json = join(dir.path, "show.json");
  const season = {
    season_id: "s01",
    episodes: episodes.map((episode, e) => ({
      episode_id: `s01_e${e + 1}`,
      scenes: scenes
        .filter((s) => s.episode === episode)
        .map((scene, c) => ({ scene_id: `s01_e${e + 1}_c${c + 1}`, utterances: scene.lines.map((l, u) => ({ utterance_id: `u${u}`, speakers: l.speakers, transcript: l.text })) })),
    })),
  };
  writeFileSync(json, JSON.stringify(season));
  return { kaggle, episodes: folder, csv, emorynlp: json };
}

let formats: Record<string, string>;
beforeAll(() => {
  formats = writeFormats();
});

describe("--holdout-episodes: a split by episode that never overlaps the training files", () => {
  it.each([1, 2, 3])("no line of an eval item's scene is in the sft or chunks output, in every format (holdout seed %i)", async (seed) => {
    for (const [format, input] of Object.entries(formats)) {
      const holdout = ["--holdout-episodes", "0.3", "--holdout-seed", String(seed)];
      const sft = await friend(["data", "sft", "--input", input, "--format", format, "--out", "train.jsonl", "--count", "100000", ...holdout]);
      const chunks = await friend(["data", "chunks", "--input", input, "--format", format, "--out", "chunks.jsonl", ...holdout]);
      const evalRun = await friend(["data", "eval", "--input", input, "--format", format, "--out", "eval.jsonl", "--count", "100000", ...holdout]);
      for (const run of [sft, chunks, evalRun]) expect(run.code, `${format}: ${run.err.join("; ")}`).toBe(0);
      // The three commands held out the same episodes.
      const heldLine = (out: string[]) => out.find((l) => l.startsWith("held out "));
      expect(heldLine(sft.out), format).toBeDefined();
      expect(heldLine(chunks.out), format).toBe(heldLine(sft.out));
      expect(heldLine(evalRun.out), format).toBe(heldLine(sft.out));

      const training = new Set<string>();
      for (const example of readJsonl<{ messages: { role: string; content: string }[] }>("train.jsonl")) {
        for (const m of example.messages) if (m.role !== "system") training.add(lineKey(m.content));
      }
      for (const chunk of readJsonl<{ text: string }>("chunks.jsonl")) for (const line of chunk.text.split("\n")) training.add(lineKey(line.replace(/^\w+: /, "")));
      const items = readJsonl<EvalItem>("eval.jsonl");
      expect(items.length, format).toBeGreaterThan(10);
      const heldEpisodes = new Set(items.map((i) => i.episode));
      expect(heldEpisodes.size, format).toBeGreaterThan(0);
      for (const item of items) {
        for (const line of [...item.scene, item.addressed, item.reply]) expect(training.has(lineKey(line.text)), `${format}: ${line.text}`).toBe(false);
      }
    }
  });

  it("splitHoldout: whatever the scenes, no held-out line is left in training, and every other line is kept in order", () => {
    const words = ["Hi.", "Okay.", "No.", "What?", "Pivot!", "Oh my god.", "How you doin'?"];
    const sceneArb = fc.record({
      episode: fc.constantFrom("E1", "E2", "E3", "E4", "E5"),
      lines: fc.array(fc.record({ speakers: fc.constant(["Joey"]), text: fc.constantFrom(...words) }), { minLength: 1, maxLength: 8 }),
    });
    fc.assert(
      fc.property(fc.array(sceneArb, { minLength: 2, maxLength: 12 }), fc.double({ min: 0.05, max: 0.95, noNaN: true }), fc.nat(1000), (scenes: Scene[], fraction, seed) => {
        fc.pre(new Set(scenes.map((s) => s.episode)).size >= 2);
        const held = chooseHoldout(scenes, { kind: "fraction", fraction }, seed);
        expect(held.size).toBeGreaterThan(0);
        const split = splitHoldout(scenes, held);
        const heldLines = new Set(split.heldOut.flatMap((s) => s.lines.map((l) => lineKey(l.text))));
        for (const scene of split.train) {
          expect(held.has(scene.episode)).toBe(false);
          for (const line of scene.lines) expect(heldLines.has(lineKey(line.text))).toBe(false);
        }
        const kept = scenes.filter((s) => !held.has(s.episode)).flatMap((s) => s.lines.filter((l) => !heldLines.has(lineKey(l.text))));
        expect(split.train.flatMap((s) => s.lines)).toEqual(kept);
        expect(split.droppedRepeats).toBe(scenes.filter((s) => !held.has(s.episode)).flatMap((s) => s.lines).length - kept.length);
      }),
    );
  });

  it("a list names episodes by their name or a prefix of it, in any case", async () => {
    const scenes = readTranscript(fixture("episodes"), "episodes").scenes;
    expect([...chooseHoldout(scenes, parseHoldoutOption("s01e02")!, 1)]).toEqual(["S01E02 The Sonogram At The End"]);
    const run = await friend(["data", "eval", "--input", fixture("episodes"), "--out", "e.jsonl", "--holdout-episodes", "S01E01"]);
    expect(run.err).toEqual([]);
    expect(run.out).toContain("held out 1 of 2 episodes: S01E01 Monica Gets A Roommate");
    const items = readJsonl<EvalItem>("e.jsonl");
    expect(items.length).toBeGreaterThan(0);
    for (const item of items) {
      expect(item.episode).toBe("S01E01 Monica Gets A Roommate");
      expect(item.id).toMatch(/^S01E01 Monica Gets A Roommate #\d+:\d+$/);
      expect(item.addressed.speaker).not.toBe(item.reply.speaker);
    }
  });

  it("friend data eval: the same seed draws the same items; --count bounds them; scenes keep at most the bot's window", async () => {
    const args = ["data", "eval", "--input", formats.kaggle!, "--holdout-episodes", "0.5", "--count", "15"];
    await friend([...args, "--out", "a.jsonl", "--seed", "4"]);
    await friend([...args, "--out", "b.jsonl", "--seed", "4"]);
    await friend([...args, "--out", "c.jsonl", "--seed", "5"]);
    const read = (name: string) => readFileSync(join(dir.path, name), "utf8");
    expect(read("a.jsonl")).toBe(read("b.jsonl"));
    expect(read("a.jsonl")).not.toBe(read("c.jsonl"));
    const items = readJsonl<EvalItem>("a.jsonl");
    expect(items).toHaveLength(15);
    for (const item of items) expect(item.scene.length).toBeLessThanOrEqual(39);
    expect(Math.max(...items.map((i) => i.scene.length))).toBeGreaterThan(5);
  });

  it.each([
    [["--holdout-episodes", "1.5"], "friend data sft: --holdout-episodes as a fraction must be between 0 and 1, not \"1.5\""],
    [["--holdout-episodes", "S09E09"], 'friend data sft: --holdout-episodes: no episode named "S09E09" in the input (episode names look like "S01E01 Monica Gets A Roommate", "S01E02 The Sonogram At The End")'],
    [["--holdout-episodes", "S01E01,S01E02"], "friend data sft: --holdout-episodes holds out every episode; nothing would be left to train on"],
    [["--holdout-episodes", " , "], "friend data sft: --holdout-episodes names no episodes"],
  ])("%j exits 2 with one line", async (extra, message) => {
    const { code, err } = await friend(["data", "sft", "--input", fixture("episodes"), "--out", "x.jsonl", ...extra]);
    expect(err).toEqual([message]);
    expect(code).toBe(2);
  });

  it("friend data eval needs --holdout-episodes", async () => {
    const { code, err } = await friend(["data", "eval", "--input", fixture("episodes"), "--out", "x.jsonl"]);
    expect(err).toEqual(["friend data eval: --holdout-episodes is required"]);
    expect(code).toBe(2);
  });
});
