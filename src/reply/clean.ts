import { isSpeakerName, knownSpeakers, labelPattern } from "./speakers.ts";

export interface CleanOptions {
  /** The persona's name; its label is stripped wherever it appears at a line start. */
  personaName: string;
  /** Names seen in the channel window; they count as speakers in any case. */
  windowNames?: Iterable<string>;
}

/** A line that is only a stage direction: `(Ross enters)`, `[Scene: Central Perk]`, `*(laughs)*`. */
const DIRECTION_LINE = /^[ \t]*[*_]{0,2}\s*(?:\([^()\n]*\)|\[[^\]\n]*\])\s*[*_]{0,2}[ \t]*$/;
/** A partial line that may still turn into a direction line. */
const DIRECTION_START = /^[ \t]*[*_]{0,2}\s*(?:[([]|$)/;
/** A partial line that may still turn into a speaker label: a few words, no punctuation that ends a label's chance. */
const LABEL_START = /^[ \t]*[*_]{0,2}[\p{L}\p{N}][\p{L}\p{N}_'’.\-]*(?:(?:\s+|\s*\/\s*)[\p{L}\p{N}_'’.&\-]+){0,7}\s*\/?\s*[*_]{0,2}\s*(?:\([^)\n]*\)?)?\s*[*_]{0,2}\s*$/u;

interface Cleaner {
  pattern: RegExp;
  known: Set<string>;
  persona: string;
}

function makeCleaner(options: CleanOptions): Cleaner {
  const known = knownSpeakers(options.personaName, options.windowNames ?? []);
  return { pattern: labelPattern(known), known, persona: options.personaName.toLowerCase() };
}

type LabelKind = "persona" | "other" | null;

/** Strips one speaker label off the start of `line`, saying whose it was. */
function takeLabel(line: string, c: Cleaner): { kind: LabelKind; rest: string } {
  const match = c.pattern.exec(line);
  if (!match || !isSpeakerName(match[1]!, c.known)) return { kind: null, rest: line };
  const kind = match[1]!.toLowerCase() === c.persona ? "persona" : "other";
  return { kind, rest: line.slice(match[0].length) };
}

/**
 * Strips every leading label (`Friend: **Friend:** Chandler: hi` → `hi`), saying whether any of
 * them belonged to someone other than the persona.
 */
function stripLabels(line: string, c: Cleaner): { rest: string; other: boolean } {
  let other = false;
  for (;;) {
    const { kind, rest } = takeLabel(line, c);
    if (!kind) return { rest: line, other };
    other ||= kind === "other";
    line = rest;
  }
}

/** Final whitespace rules, shared by the streaming and final views so one stays a prefix of the other. */
function finish(lines: readonly string[]): string {
  return lines
    .map((line) => line.trimEnd())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

export interface StreamView {
  /** Text that the final cleaned reply is guaranteed to start with. */
  text: string;
  /** True when the cleaner has already cut: nothing more the model says will be shown. */
  done: boolean;
}

/**
 * Cleans a reply as it streams in, line by line. The decision for each line depends only on the
 * lines before it, which is what makes streaming safe: a shown prefix is never taken back. Each
 * line is examined once, so a long reply costs linear time however many chunks it arrives in.
 */
export class ReplyCleaner {
  readonly #c: Cleaner;
  readonly #lines: string[] = [];
  #partial = "";
  #started = false;
  #cut = false;

  constructor(options: CleanOptions) {
    this.#c = makeCleaner(options);
  }

  /** Adds raw model text. */
  push(chunk: string): this {
    if (this.#cut) return this;
    const parts = (this.#partial + chunk.replace(/\r/g, "")).split("\n");
    this.#partial = parts.pop()!;
    for (const line of parts) {
      this.#takeLine(line);
      if (this.#cut) break;
    }
    return this;
  }

  /** True once the model has started an invented scene: nothing more it says will be shown. */
  get done(): boolean {
    // A label is certain once a character follows it (`Ross:` could still become `Ross::`).
    return this.#cut || (this.#started && stripLabels(this.#partial, this.#c).other && !/[:*_]$/.test(this.#partial));
  }

  /** What may be shown now: the unfinished last line is held back while it could still become a label or a direction. */
  view(): StreamView {
    if (this.done) return { text: finish(this.#lines), done: true };
    const { rest, other } = stripLabels(this.#partial, this.#c);
    const pending = (this.#started && other) || DIRECTION_START.test(rest) || LABEL_START.test(rest) || takeLabel(rest, this.#c).kind !== null;
    if (pending) return { text: finish(this.#lines), done: false };
    return { text: finish([...this.#lines, rest]), done: false };
  }

  /** The final reply, treating the unfinished line as complete. May be "": callers must not send that. */
  text(): string {
    if (this.#cut) return finish(this.#lines);
    const lines = [...this.#lines];
    const { rest, other } = stripLabels(this.#partial, this.#c);
    if (!this.#started) {
      if (!DIRECTION_LINE.test(rest)) lines.push(rest);
    } else if (!other && !DIRECTION_LINE.test(rest)) {
      lines.push(rest);
    }
    return finish(lines);
  }

  #takeLine(raw: string): void {
    const { rest, other } = stripLabels(raw, this.#c);
    if (!this.#started) {
      // Before any content: drop labels (whoever the model thinks it is) and bare directions.
      if (DIRECTION_LINE.test(rest)) return;
      this.#lines.push(rest);
      this.#started = rest.trim() !== "";
      return;
    }
    // A new speaker or a stage direction starts an invented scene; Friend carrying on is still Friend.
    if (other || DIRECTION_LINE.test(rest)) this.#cut = true;
    else this.#lines.push(rest);
  }
}

/**
 * Turns raw model output into what Friend says: leading `Friend:` (and other speaker) labels
 * stripped, cut before the first hallucinated follow-on speaker or stage-direction line.
 * May return "" — callers must not send that.
 */
export function cleanReply(raw: string, options: CleanOptions): string {
  return new ReplyCleaner(options).push(raw).text();
}

/** What may be shown of a reply that is still streaming (see ReplyCleaner.view). */
export function streamingView(raw: string, options: CleanOptions): StreamView {
  return new ReplyCleaner(options).push(raw).view();
}
