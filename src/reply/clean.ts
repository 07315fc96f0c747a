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
const LABEL_START = /^[ \t]*[*_]{0,2}[\p{L}\p{N}][\p{L}\p{N}_'’.\-]*(?:\s*\/?\s*[\p{L}\p{N}_'’.&\-]+){0,7}\s*\/?\s*[*_]{0,2}\s*(?:\([^)\n]*\)?)?\s*[*_]{0,2}\s*$/u;

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

interface Scan {
  lines: string[];
  /** True once a follow-on speaker or direction line was found: everything after is discarded. */
  cut: boolean;
}

/**
 * Walks complete lines top to bottom. The decision for each line depends only on the lines before
 * it, which is what makes streaming safe: a shown prefix is never taken back.
 */
function scanLines(rawLines: readonly string[], c: Cleaner): Scan {
  const lines: string[] = [];
  for (const raw of rawLines) {
    const started = lines.some((l) => l.trim() !== "");
    const { rest, other } = stripLabels(raw, c);
    if (!started) {
      // Before any content: drop labels (whoever the model thinks it is) and bare directions.
      if (!DIRECTION_LINE.test(rest)) lines.push(rest);
      continue;
    }
    // A new speaker or a stage direction starts an invented scene; Friend carrying on is still Friend.
    if (other || DIRECTION_LINE.test(rest)) return { lines, cut: true };
    lines.push(rest);
  }
  return { lines, cut: false };
}

/** Final whitespace rules, shared by the streaming and final views so one stays a prefix of the other. */
function finish(lines: readonly string[]): string {
  return lines
    .map((line) => line.trimEnd())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/**
 * Turns raw model output into what Friend says: leading `Friend:` (and other speaker) labels
 * stripped, cut before the first hallucinated follow-on speaker or stage-direction line.
 * May return "" — callers must not send that.
 */
export function cleanReply(raw: string, options: CleanOptions): string {
  return finish(scanLines(raw.replace(/\r\n?/g, "\n").split("\n"), makeCleaner(options)).lines);
}

export interface StreamView {
  /** Text that the final cleaned reply is guaranteed to start with. */
  text: string;
  /** True when the cleaner has already cut: nothing more the model says will be shown. */
  done: boolean;
}

/**
 * What may be shown of a reply that is still streaming. Complete lines are cleaned as usual; the
 * unfinished last line is held back while it could still become a label or a direction.
 */
export function streamingView(raw: string, options: CleanOptions): StreamView {
  const c = makeCleaner(options);
  const all = raw.replace(/\r\n?/g, "\n").split("\n");
  const partial = all.pop() ?? "";
  const scan = scanLines(all, c);
  if (scan.cut) return { text: finish(scan.lines), done: true };
  const started = scan.lines.some((l) => l.trim() !== "");
  const { rest, other } = stripLabels(partial, c);
  // A label is certain once a character follows it (`Ross:` could still be `Ross::` or `Ross:/`).
  if (started && other && !/[:*_]$/.test(partial)) return { text: finish(scan.lines), done: true };
  const pending = DIRECTION_START.test(rest) || LABEL_START.test(rest) || takeLabel(rest, c).kind !== null;
  if (pending) return { text: finish(scan.lines), done: false };
  return { text: finish(scanLines([...all, partial], c).lines), done: false };
}
