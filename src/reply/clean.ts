import type { CastMember } from "../core/cast.ts";
import { closesFence, fenceLine } from "./fences.ts";
import { knownSpeakers, readLabel, type KnownSpeakers } from "./speakers.ts";

export interface CleanOptions {
  /** The persona's name; its label is stripped wherever it appears at a line start. */
  personaName: string;
  /** Names seen in the channel window; they count as speakers in any case, whatever characters they hold. */
  windowNames?: Iterable<string>;
  /** The configured cast: every spelling of the persona is its own label, every other member's a follow-on speaker. */
  cast: readonly CastMember[];
}

// Each run of spaces is followed by something else, so the direction regexes never backtrack more than once.
const LEAD = String.raw`^[ \t\p{Cf}]*(?:[*_]+[ \t]*)?`;
const TAIL = String.raw`[ \t]*(?:[*_]+[ \t]*)?`;
/** What may come before a direction's first letter: `(*sighs*)`, `([Scene: …])`, `("quietly")`. */
const OPENERS = String.raw`[*_"“'[(]*`;
/**
 * A line that is only a stage direction: `(Ross enters)`, `[Scene: Central Perk]`, `*(laughs)*`.
 * Its words start with a letter, so `(1 + 2)` and `[1, 2, 3]` are not directions.
 */
const DIRECTION_LINE = new RegExp(String.raw`${LEAD}(?:\([ \t]*${OPENERS}\p{L}[^()\n]*\)|\[[ \t]*${OPENERS}\p{L}[^[\]\n]*\])${TAIL}$`, "u");
/** An unfinished line that may still turn into a direction line. */
const DIRECTION_START = new RegExp(
  String.raw`${LEAD}(?:\([ \t]*(?:${OPENERS}(?:\p{L}[^()\n]*(?:\)${TAIL})?)?)?|\[[ \t]*(?:${OPENERS}(?:\p{L}[^[\]\n]*(?:\]${TAIL})?)?)?)?$`,
  "u",
);
/** Model output line breaks besides "\n"; "\r" is dropped (CRLF). */
const OTHER_LINE_BREAKS = /[\u0085\u2028\u2029\v\f]/g;
/** The first characters of the unfinished line kept apart, for the per-chunk `done` check. */
const HEAD_CHARS = 1024;

/** What becomes of one line of model output. */
type Verdict =
  | { type: "keep"; text: string }
  | { type: "skip" }
  /** The reply ends here; `text` is what this line keeps before the cut. */
  | { type: "cut"; text?: string }
  /** Unfinished and undecided: `text` is what may be shown of it now. */
  | { type: "pending"; text: string };

/** Final whitespace rules, shared by the streaming and final views so one stays a prefix of the other. */
function finish(lines: readonly string[]): string {
  return lines
    .map((line) => line.trimEnd())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/**
 * Strips every leading speaker label (`Friend: **Friend:** hi` → `hi`), saying whether one of them
 * was someone else's, and whether the labels are still undecided on an unfinished line.
 */
function stripLabels(line: string, speakers: KnownSpeakers, final: boolean): { rest: string; other: boolean; undecided: boolean } {
  let at = 0;
  for (;;) {
    const label = readLabel(line, speakers, { from: at, final });
    if (label === "maybe") return { rest: line.slice(at), other: false, undecided: true };
    if (label === null) return { rest: line.slice(at), other: false, undecided: false };
    if (label.kind === "other") return { rest: line.slice(label.end), other: true, undecided: !label.settled };
    if (!label.settled) return { rest: line.slice(label.end), other: false, undecided: true };
    at = label.end;
  }
}

/**
 * Where someone else's bold label starts inside a line (`Sure. **Ross:** hey`): `cut` at a settled
 * one, `hold` from the first place one could still be forming. Only after a space, and only bold.
 */
function inlineLabel(line: string, speakers: KnownSpeakers, final: boolean): { cut?: number; hold?: number } {
  for (let at = line.indexOf(" ") + 1; at > 0 && at < line.length; at = line.indexOf(" ", at) + 1) {
    // Any run of spaces and tabs before the emphasis; the label itself is read from the emphasis on.
    while (line[at] === " " || line[at] === "\t") at++;
    if (at >= line.length || !"*_".includes(line[at]!)) continue;
    const label = readLabel(line, speakers, { from: at, final, inline: true });
    if (label === "maybe" || (label !== null && label.kind === "other" && !label.settled)) return { hold: at };
    if (label !== null && label.kind === "other") return { cut: at };
  }
  return {};
}

/**
 * Cleans a reply as it streams in, line by line. The decision for each line depends only on the
 * lines before it, which is what makes streaming safe: a shown prefix is never taken back. Each
 * line is examined once, and a label is read from at most a few hundred characters, so `push`
 * costs time linear in the text however it is chunked; `view` and `text` cost the text so far.
 *
 * Rules (docs/CLEANER.md): the persona's labels are stripped; a line that starts with someone
 * else's label, or is only a stage direction, ends the reply (a reply that opens with someone
 * else's label is empty); nothing inside a code block is looked at.
 */
export class ReplyCleaner {
  readonly #speakers: KnownSpeakers;
  readonly #lines: string[] = [];
  #partial = "";
  #partialHead = "";
  #started = false;
  #cut = false;
  /** The marker of the code block the finished lines left open. */
  #fence: string | null = null;

  constructor(options: CleanOptions) {
    this.#speakers = knownSpeakers(options.personaName, options.windowNames ?? [], options.cast);
  }

  /** Adds raw model text. */
  push(chunk: string): this {
    if (this.#cut) return this;
    const text = chunk.replace(/\r/g, "").replace(OTHER_LINE_BREAKS, "\n");
    let start = 0;
    for (let newline = text.indexOf("\n"); newline >= 0; newline = text.indexOf("\n", start)) {
      this.#appendPartial(text.slice(start, newline));
      const line = this.#partial;
      this.#partial = "";
      this.#partialHead = "";
      this.#apply(line);
      if (this.#cut) return this;
      start = newline + 1;
    }
    this.#appendPartial(text.slice(start));
    return this;
  }

  /** True once the model has started an invented scene: nothing more it says will be shown. */
  get done(): boolean {
    if (this.#cut) return true;
    if (this.#fence !== null) return false;
    // Checks only the head of the unfinished line, so that it costs the same after every chunk.
    const { other, undecided } = stripLabels(this.#partialHead, this.#speakers, false);
    return other && !undecided;
  }

  /** What may be shown now: the unfinished last line is held back while it could still be cut. */
  view(): StreamView {
    if (this.done) return { text: finish(this.#lines), done: true };
    const verdict = this.#judge(this.#partial, false);
    return { text: finish(verdict.type === "skip" || verdict.text === undefined ? this.#lines : [...this.#lines, verdict.text]), done: false };
  }

  /** The final reply, treating the unfinished line as complete. May be "": callers must not send that. */
  text(): string {
    if (this.#cut) return finish(this.#lines);
    const verdict = this.#judge(this.#partial, true);
    return finish(verdict.type === "skip" || verdict.text === undefined ? this.#lines : [...this.#lines, verdict.text]);
  }

  #appendPartial(text: string): void {
    this.#partial += text;
    if (this.#partialHead.length < HEAD_CHARS) this.#partialHead = (this.#partialHead + text).slice(0, HEAD_CHARS);
  }

  #apply(line: string): void {
    const verdict = this.#judge(line, true);
    if (verdict.type === "skip" || verdict.type === "pending") return;
    if (verdict.text !== undefined) this.#lines.push(verdict.text);
    if (verdict.type === "cut") {
      this.#cut = true;
      return;
    }
    this.#started ||= verdict.text.trim() !== "";
    const fence = fenceLine(verdict.text);
    if (fence && this.#fence === null) this.#fence = fence.marker;
    else if (fence && closesFence(fence, this.#fence!)) this.#fence = null;
  }

  /** The fate of one line given the lines before it; `final` is false for the unfinished last line. */
  #judge(line: string, final: boolean): Verdict {
    // Inside a code block every line is code, whatever it looks like.
    if (this.#fence !== null) return { type: "keep", text: line };
    const { rest, other, undecided } = stripLabels(line, this.#speakers, final);
    if (undecided) return { type: "pending", text: "" };
    // Someone else speaks: an invented scene starts, or the whole reply is someone else's line.
    if (other) return { type: "cut" };
    if (!final && DIRECTION_START.test(rest)) return { type: "pending", text: "" };
    // A stage direction before any words is dropped; after them it starts an invented scene.
    if (DIRECTION_LINE.test(rest)) return this.#started ? { type: "cut" } : { type: "skip" };
    const inline = inlineLabel(rest, this.#speakers, final);
    if (inline.hold !== undefined) {
      // What stays before a label may turn out to be a stage direction, which goes too.
      const before = rest.slice(0, inline.hold);
      return { type: "pending", text: DIRECTION_START.test(before) ? "" : before };
    }
    if (inline.cut !== undefined) {
      const before = rest.slice(0, inline.cut).trimEnd();
      return { type: "cut", text: DIRECTION_LINE.test(before) ? undefined : before };
    }
    return { type: "keep", text: rest };
  }
}

export interface StreamView {
  /** Text that the final cleaned reply is guaranteed to start with. */
  text: string;
  /** True when the cleaner has already cut: nothing more the model says will be shown. */
  done: boolean;
}

/**
 * Turns raw model output into what Friend says: leading `Friend:` labels stripped, cut before the
 * first hallucinated follow-on speaker or stage-direction line, "" when the model spoke as someone
 * else from the start. Callers must not send "": they regenerate once, then fall back.
 */
export function cleanReply(raw: string, options: CleanOptions): string {
  return new ReplyCleaner(options).push(raw).text();
}

/** What may be shown of a reply that is still streaming (see ReplyCleaner.view). */
export function streamingView(raw: string, options: CleanOptions): StreamView {
  return new ReplyCleaner(options).push(raw).view();
}
