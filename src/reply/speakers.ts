import { castSpellings, type CastMember } from "../core/cast.ts";

/** Recurring characters the models also invent lines for. Matched only when capitalised: some are common words. */
const RECURRING_CAST = [
  "Gunther", "Janice", "Ben", "Emma", "Carol", "Susan", "Richard", "Mike", "Emily", "Julie", "Kathy", "Paolo", "Barry",
  "Mindy", "Ursula", "Frank", "Jack", "Judy", "Estelle", "Charlie", "Pete", "Paul", "Elizabeth", "Janine", "Eddie",
  "Chip", "Mona", "Erica", "David", "Joshua", "Treeger", "Heckles", "Fun Bobby",
];
/** Script labels for several people at once; capitalised only. */
const GROUP_LABELS = ["All", "Both", "Everyone", "Everybody"];
/** Turn labels that chat-tuned models leak, in any case. "Assistant" is the persona talking. */
const CHAT_ROLE_LABELS = ["User", "Human", "System"];
const PERSONA_ALIASES = ["Assistant"];

/** Capitalised words that start a line with a colon, even with a parenthesis, without being a speaker. */
const NOT_SPEAKERS = new Set([
  "note", "notes", "nb", "ps", "p.s.", "edit", "update", "warning", "caution", "important", "tip", "hint", "reminder",
  "step", "example", "answer", "question", "q", "a", "fact", "name", "total", "price", "cost", "time", "date", "result",
  "output", "input", "error", "reason", "solution", "problem", "option", "rule", "summary", "source", "translation",
  "spoiler", "bonus", "disclaimer", "definition", "usage", "context", "pros", "cons", "also", "monday", "tuesday",
  "wednesday", "thursday", "friday", "saturday", "sunday", "today", "tomorrow", "tonight", "yesterday",
]);

/** List bullets that may precede a label when followed by a space: `- Ross:`. */
const BULLETS = "-+•‣◦▪–—";
/** ASCII and fullwidth colons, and the look-alikes used to dodge filters. */
const COLONS = ":：﹕꞉∶";
const EMPHASIS = "*_";
/** Characters that end a label's name; display names never contain them (see speakerName). */
const NAME_STOPS = `${COLONS}()[]*_\`\n`;

/** A label must fit in this many characters from where it starts, so reading one costs constant time. */
const LABEL_SCAN = 256;
const MAX_PREFIX = 32;
const MAX_NAME = 64;
const MAX_DIRECTION = 80;

/** `Gunther`, `Mr. Treeger`, `Fun Bobby`: up to three capitalised words. */
const WORD = String.raw`\p{Lu}[\p{L}\p{M}'’.\-]*`;
const GENERIC_NAME = new RegExp(String.raw`^${WORD}(?:\s+${WORD}){0,2}$`, "u");
/** What a generic name can be while it is still being written. */
const GENERIC_NAME_START = new RegExp(String.raw`^(?:${WORD}(?:\s+(?:${WORD})?){0,2})?$`, "u");
const TITLED_NAME = /^(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?(?:\s+\p{Lu}[\p{L}\p{M}'’-]*){1,2}$/u;
/** `Monica and Phoebe`, `PHOE/MNCA`, `Ross & Rachel`, `Joey, Chandler`. */
const NAME_SEPARATOR = /\s*(?:\/|&|,|\+|\band\b)\s*/i;
/** A separator still being written: `Ross a`, `Ross an`. */
const SEPARATOR_START = /^(.*\S)\s+an?$/i;

function isBlank(char: string): boolean {
  return char === " " || char === "\t" || /^[\p{Zs}\p{Cf}]$/u.test(char);
}

/** Folds one character at a time, so a prefix of a name always folds to a prefix of its key. */
function fold(text: string, keep: RegExp): string {
  let key = "";
  for (const char of text.normalize("NFKD")) {
    const lower = char === "ς" ? "σ" : char.toLowerCase();
    for (const c of lower) if (keep.test(c)) key += c;
  }
  return key;
}

/** "Zoë 🦄" → "zoe": letters and digits, accents and case folded. */
function letterKey(name: string): string {
  return fold(name, /^[\p{L}\p{N}]$/u);
}

/** For names with no letter or digit ("🦄"): every other visible character, minus list bullets. */
function symbolKey(name: string): string {
  return fold(name, /^[^\p{L}\p{N}\p{M}\p{Z}\p{Cf}\s\-+•‣◦▪–—]$/u);
}

/** One key per name: its letters, or, when it has none, its symbols (marked so they never meet letters). */
function nameKey(name: string): string {
  const letters = letterKey(name);
  if (letters) return letters;
  const symbols = symbolKey(name);
  return symbols ? `\0${symbols}` : "";
}

function startsCapitalised(name: string): boolean {
  const letter = /\p{L}/u.exec(name)?.[0];
  return letter === undefined || letter !== letter.toLowerCase();
}

let fixedKeys: [key: string, needsCapital: boolean][] | undefined;
/** Each configured cast's keys, by member: computed once per cast (settings are loaded once). */
const castKeyCache = new WeakMap<readonly CastMember[], { name: string; keys: string[] }[]>();

/** The keys of the names known in every channel besides the cast: computed once. */
function fixedSpeakerKeys(): [key: string, needsCapital: boolean][] {
  fixedKeys ??= [
    ...CHAT_ROLE_LABELS.map((name) => [nameKey(name), false] as [string, boolean]),
    ...[...RECURRING_CAST, ...GROUP_LABELS].map((name) => [nameKey(name), true] as [string, boolean]),
  ];
  return fixedKeys;
}

function castKeys(cast: readonly CastMember[]): { name: string; keys: string[] }[] {
  let keys = castKeyCache.get(cast);
  if (!keys) castKeyCache.set(cast, (keys = cast.map((m) => ({ name: m.name, keys: castSpellings(m).map(nameKey).filter(Boolean) }))));
  return keys;
}

export type SpeakerKind = "persona" | "other";

/**
 * The speakers whose labels the cleaner cuts and the prompt guards: the persona (every spelling of
 * it, and "Assistant"), the rest of the configured cast, the recurring characters, group and
 * chat-role labels, and the names in the channel window.
 * Names compare by letters and digits, with accents, case, emoji and punctuation folded away, so
 * "Zoë 🦄", "Zoe" and "ＺＯＥ" are one speaker; a name with no letter or digit compares by its symbols.
 */
export class KnownSpeakers {
  readonly #persona = new Set<string>();
  /** Key → whether the name counts only when capitalised. */
  readonly #others = new Map<string, boolean>();

  constructor(personaName: string, windowNames: Iterable<string>, cast: readonly CastMember[]) {
    for (const name of [personaName, ...PERSONA_ALIASES]) this.#add(this.#persona, name);
    const members = castKeys(cast);
    for (const member of members) if (member.name.toLowerCase() === personaName.toLowerCase()) for (const key of member.keys) this.#persona.add(key);
    for (const name of windowNames) this.#addOther(nameKey(name), false);
    for (const member of members) for (const key of member.keys) this.#addOther(key, false);
    for (const [key, needsCapital] of fixedSpeakerKeys()) this.#addOther(key, needsCapital);
  }

  /** Whose label `name` (with its stage direction, if any) is, or null when it is not a speaker's. */
  kindOf(name: string, direction?: string): SpeakerKind | null {
    const key = nameKey(name);
    if (!key) return null;
    if (this.#persona.has(key)) return "persona";
    if (this.#isOther(name, key)) return "other";
    const parts = name.split(NAME_SEPARATOR);
    if (parts.length > 1 && parts.every((part) => this.#isSpeaker(part))) return "other";
    if (TITLED_NAME.test(name)) return "other";
    // An unknown capitalised name counts only with a stage direction: `Gunther (walking by):`.
    if (direction !== undefined && this.#takesDirection(name, direction)) return "other";
    return null;
  }

  /** Whether more characters could still make `start` a speaker's name (with or without a direction). */
  couldBeName(start: string): boolean {
    if (this.#couldBeSingleName(start)) return true;
    const parts = start.split(NAME_SEPARATOR);
    const last = parts.pop()!;
    if (parts.length > 0 && parts.every((part) => this.#isSpeaker(part)) && this.#couldBeSingleName(last)) return true;
    const head = SEPARATOR_START.exec(start)?.[1];
    return head !== undefined && head.split(NAME_SEPARATOR).every((part) => this.#isSpeaker(part));
  }

  /** Whether `name` followed by a direction that starts with `directionStart` could still be a label. */
  couldTakeDirection(name: string, directionStart: string): boolean {
    if (this.kindOf(name) !== null) return true;
    const trimmed = directionStart.trimStart();
    return this.#takesDirection(name, trimmed === "" ? "x" : trimmed);
  }

  #takesDirection(name: string, direction: string): boolean {
    const firstWord = name.split(/\s/, 1)[0]!.toLowerCase();
    return GENERIC_NAME.test(name) && !NOT_SPEAKERS.has(firstWord) && /^\s*\p{Ll}/u.test(direction);
  }

  #couldBeSingleName(start: string): boolean {
    const trimmed = start.trim();
    if (!trimmed || GENERIC_NAME_START.test(trimmed)) return true;
    // Before its first letter or digit, a name could still become any name.
    const prefix = letterKey(trimmed);
    if (!prefix) return true;
    const capitalised = startsCapitalised(trimmed);
    for (const key of this.#persona) if (key.startsWith(prefix)) return true;
    for (const [key, needsCapital] of this.#others) if (key.startsWith(prefix) && (capitalised || !needsCapital)) return true;
    return false;
  }

  /** One name (not a group of them) that is a speaker without any direction. */
  #isSpeaker(name: string): boolean {
    const key = nameKey(name.trim());
    return key !== "" && (this.#persona.has(key) || this.#isOther(name.trim(), key));
  }

  #isOther(name: string, key: string): boolean {
    const needsCapital = this.#others.get(key);
    return needsCapital !== undefined && (!needsCapital || startsCapitalised(name));
  }

  #add(set: Set<string>, name: string): void {
    const key = nameKey(name);
    if (key) set.add(key);
  }

  #addOther(key: string, needsCapital: boolean): void {
    if (!key || this.#persona.has(key)) return;
    // A name known in any case stays so when it also appears in a capitalised-only list.
    this.#others.set(key, (this.#others.get(key) ?? true) && needsCapital);
  }
}

/** Names the cleaner and the prompt guards treat as speakers. */
export function knownSpeakers(personaName: string, windowNames: Iterable<string>, cast: readonly CastMember[]): KnownSpeakers {
  return new KnownSpeakers(personaName, windowNames, cast);
}

/** A speaker label read at the start of a line. */
export interface SpeakerLabel {
  kind: SpeakerKind;
  /** Where the text after the label (and the spaces after it) starts. */
  end: number;
  /** False while the line is unfinished and the next character could still undo the label (`Ross:` → `Ross://`). */
  settled: boolean;
  /** The name as written (`Ross`, `Joey Tribbiani`). */
  name: string;
  /** The stage direction between the name and the colon, if any (`entering`). */
  direction?: string;
}

export interface ReadLabelOptions {
  /** Where in `text` the line starts. */
  from?: number;
  /** True when the line is complete; false when more characters may still arrive. */
  final: boolean;
  /** Inside a line: only a bold label (`**Ross:**`) counts, with nothing before it. */
  inline?: boolean;
}

/**
 * Reads a speaker label at the start of a line: optional spaces, zero-width characters, a quote
 * marker or a list bullet; optional bold or italics; a speaker's name; optionally a stage direction
 * in parentheses; a colon (ASCII or fullwidth). `Ross:`, `**Friend:**`, `- Joey (to Rachel):`,
 * `\u200bRoss：`, `Friend:hi`. Returns "maybe" when the line is unfinished and more characters could
 * still make it a label. Reads at most a fixed number of characters, so it costs constant time.
 */
export function readLabel(text: string, speakers: KnownSpeakers, options: ReadLabelOptions): SpeakerLabel | "maybe" | null {
  const from = options.from ?? 0;
  const line = text.slice(from, from + LABEL_SCAN);
  // Past the scanned window nothing can change the answer, finished line or not.
  const ended = options.final || text.length - from >= LABEL_SCAN;
  const n = line.length;
  const maybe = (could: boolean) => (!ended && could ? "maybe" : null);
  let i = 0;
  if (!options.inline) {
    for (;;) {
      if (i >= n) return maybe(true);
      if (i > MAX_PREFIX) return null;
      const char = line[i]!;
      if (isBlank(char) || char === ">") {
        i++;
        continue;
      }
      if (BULLETS.includes(char) || char === "*") {
        if (i + 1 >= n) return maybe(true);
        if (isBlank(line[i + 1]!)) {
          i += 2;
          continue;
        }
      }
      break;
    }
  }
  const emphasisStart = i;
  i = skipSpacesAndEmphasis(line, i);
  if (options.inline && countEmphasis(line, emphasisStart, i) < 2) return i >= n ? maybe(true) : null;
  if (i >= n) return maybe(true);

  const nameStart = i;
  while (i < n && !NAME_STOPS.includes(line[i]!)) if (++i - nameStart > MAX_NAME) return null;
  const name = line.slice(nameStart, i).trim();
  if (i >= n) return maybe(speakers.couldBeName(name));
  if (!name) return null;
  i = skipSpacesAndEmphasis(line, i);
  if (i >= n) return maybe(speakers.couldBeName(name));

  let direction: string | undefined;
  if (line[i] === "(") {
    const open = i + 1;
    let close = open;
    while (close < n && line[close] !== ")" && line[close] !== "\n") if (++close - open > MAX_DIRECTION) return null;
    if (close >= n) return maybe(speakers.couldTakeDirection(name, line.slice(open)));
    if (line[close] !== ")") return null;
    direction = line.slice(open, close);
    i = skipSpacesAndEmphasis(line, close + 1);
    if (i >= n) return maybe(speakers.kindOf(name, direction) !== null);
  }

  if (!COLONS.includes(line[i]!)) return null;
  const kind = speakers.kindOf(name, direction);
  if (!kind) return null;
  i++;
  if (i < n && COLONS.includes(line[i]!)) i++;
  i = skipSpacesAndEmphasis(line, i, false);
  const named = { name, ...(direction !== undefined ? { direction } : {}) };
  if (i >= n) return { kind, end: from + i, settled: ended, ...named };
  if (line[i] === "/") return null; // a URL (`joey://`), not a label
  while (i < n && (line[i] === " " || line[i] === "\t")) i++;
  return { kind, end: from + i, settled: true, ...named };
}

/** Skips up to three bold or italic marks, with blanks (zero-width ones too) around and between them. */
function skipSpacesAndEmphasis(line: string, i: number, spaces = true): number {
  let marks = 0;
  for (; i < line.length; i++) {
    const char = line[i]!;
    if (EMPHASIS.includes(char) && marks < 3) marks++;
    else if (!(spaces ? isBlank(char) : /^\p{Cf}$/u.test(char))) break;
  }
  return i;
}

function countEmphasis(line: string, from: number, to: number): number {
  let marks = 0;
  for (let i = from; i < to; i++) if (EMPHASIS.includes(line[i]!)) marks++;
  return marks;
}

/**
 * Stop sequences for a generation, most likely next speaker first: the people recently seen in the
 * window (most recent first), then the cast in its configured order (OpenAI takes only four, so
 * the config lists the characters whose lines most often follow a reply first). Each starts with
 * "\n" so it matches a new line.
 */
export function stopSequences(personaName: string, recentSpeakers: readonly string[], cast: readonly CastMember[], limit: number): string[] {
  const names: string[] = [];
  for (const name of [...recentSpeakers, ...cast.map((m) => m.name)]) {
    if (name.toLowerCase() === personaName.toLowerCase()) continue;
    if (!names.some((n) => n.toLowerCase() === name.toLowerCase())) names.push(name);
  }
  return names.slice(0, limit).map((name) => `\n${name}:`);
}
