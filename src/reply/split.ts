import { closesFence, fenceLine } from "./fences.ts";

/** Discord's limit on one message's content. */
export const DISCORD_MESSAGE_LIMIT = 2000;

/** The smallest limit splitMessage accepts: room for text besides a closed and reopened fence. */
export const MIN_SPLIT_LIMIT = 400;
/** Longer fence markers are treated as text: closing and reopening them would crowd out the text. */
const MAX_FENCE_MARKER = 64;
/** A longer info string is not a language name; the reopened fence leaves it out. */
const MAX_FENCE_LANGUAGE = 32;


interface Fence {
  /** The opening line to repeat in the next message, e.g. "```ts". */
  opener: string;
  /** What closes it, e.g. "```". */
  marker: string;
}

/** One Discord message of a split reply: a slice of the reply, plus the fence lines added around it. */
export interface MessagePart {
  /** "" or a fence opener and "\n", reopening the code block the previous part closed. */
  reopen: string;
  /** The reply's own text. */
  body: string;
  /** "" or "\n" and a fence marker, closing the code block still open at the cut. */
  close: string;
}

/** The code fence still open at the end of `text`, if any. */
function openFence(text: string): Fence | null {
  let open: Fence | null = null;
  for (const line of text.split("\n")) {
    const fence = fenceLine(line);
    if (!fence || fence.marker.length > MAX_FENCE_MARKER) continue;
    if (!open) {
      const language = fence.info.trim().split(/\s/, 1)[0]!;
      open = { opener: fence.marker + (language.length <= MAX_FENCE_LANGUAGE ? language : ""), marker: fence.marker };
    } else if (closesFence(fence, open.marker)) {
      open = null;
    }
  }
  return open;
}

/** Where to cut `text` at or before `max`: a paragraph, line, sentence or word boundary, else hard. */
function cutPoint(text: string, max: number): number {
  const head = text.slice(0, max + 1);
  const earliest = Math.floor(max / 3); // cutting very early wastes messages; a weaker boundary later is better
  const boundaries: [RegExp, "before" | "after"][] = [
    [/\n[ \t]*\n/g, "before"],
    [/\n/g, "before"],
    [/[.!?…][)"'”’*_]*[ \t]/g, "after"],
    [/[ \t]/g, "before"],
  ];
  for (const [pattern, side] of boundaries) {
    let best = -1;
    for (const match of head.matchAll(pattern)) {
      const at = side === "before" ? match.index : match.index + match[0].length;
      if (at <= max && at >= earliest) best = at;
    }
    if (best > 0) return best;
  }
  const code = text.charCodeAt(max - 1);
  return code >= 0xd800 && code <= 0xdbff ? max - 1 : max; // never through a surrogate pair
}

/**
 * Splits a reply into Discord messages of at most `limit` characters, at paragraph, sentence or
 * word boundaries. A code block that spans a cut is closed at the end of one message and reopened,
 * with its language, at the start of the next, so each message renders on its own. The bodies are
 * the reply itself: joined, with only the whitespace at each cut between them, they give it back.
 */
export function splitMessageParts(text: string, limit: number = DISCORD_MESSAGE_LIMIT): MessagePart[] {
  if (limit < MIN_SPLIT_LIMIT) throw new RangeError(`splitMessage needs a limit of at least ${MIN_SPLIT_LIMIT} characters, got ${limit}`);
  const parts: MessagePart[] = [];
  let rest = text.trim();
  let reopen = "";
  while (rest) {
    if (reopen.length + rest.length <= limit) {
      parts.push({ reopen, body: rest, close: "" });
      break;
    }
    // The fence to close depends on where the cut lands: shrink the room until body and fence fit.
    let room = limit - reopen.length;
    for (;;) {
      const cut = cutPoint(rest, room);
      const body = rest.slice(0, cut).trimEnd();
      const fence = openFence(reopen + body);
      const close = fence ? `\n${fence.marker}` : "";
      const overflow = reopen.length + body.length + close.length - limit;
      if (overflow > 0) {
        room -= overflow;
        continue;
      }
      if (body) parts.push({ reopen, body, close });
      reopen = fence ? `${fence.opener}\n` : "";
      rest = dropCutWhitespace(rest.slice(cut));
      break;
    }
  }
  return parts;
}

/** Drops the whitespace at a cut, blank lines included, but keeps the next line's indentation. */
function dropCutWhitespace(rest: string): string {
  const space = /^\s*/.exec(rest)![0];
  const lineStart = space.lastIndexOf("\n") + 1;
  return rest.slice(lineStart > 0 ? lineStart : space.length);
}

/** splitMessageParts, each part as the message text Discord gets. */
export function splitMessage(text: string, limit: number = DISCORD_MESSAGE_LIMIT): string[] {
  return splitMessageParts(text, limit).map((part) => part.reopen + part.body + part.close);
}
