/** Discord's limit on one message's content. */
export const DISCORD_MESSAGE_LIMIT = 2000;

const FENCE_LINE = /^[ \t]*(`{3,}|~{3,})([^\n`]*)$/gm;
/** Room kept at the end of a message to close a code block that is open at the cut. */
const FENCE_RESERVE = 12;

interface Fence {
  /** The opening line to repeat in the next message, e.g. "```ts". */
  opener: string;
  /** What closes it, e.g. "```". */
  marker: string;
}

/** The code fence still open at the end of `text`, if any. */
function openFence(text: string): Fence | null {
  let open: Fence | null = null;
  for (const [, marker, info] of text.matchAll(FENCE_LINE)) {
    if (!open) open = { opener: `${marker}${info!.trim()}`, marker: marker! };
    else if (marker![0] === open.marker[0] && marker!.length >= open.marker.length && !info!.trim()) open = null;
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
 * with its language, at the start of the next, so each message renders on its own.
 */
export function splitMessage(text: string, limit: number = DISCORD_MESSAGE_LIMIT): string[] {
  const chunks: string[] = [];
  let rest = text.trim();
  let reopen = "";
  while (rest) {
    const head = reopen ? `${reopen}\n` : "";
    if (head.length + rest.length <= limit) {
      chunks.push(head + rest);
      break;
    }
    const cut = cutPoint(rest, limit - head.length - FENCE_RESERVE);
    const body = head + rest.slice(0, cut).trimEnd();
    const fence = openFence(body);
    chunks.push(fence ? `${body}\n${fence.marker}` : body);
    reopen = fence?.opener ?? "";
    // Drop the boundary itself, but keep a code line's indentation.
    rest = rest.slice(cut).replace(/^(?:\n+|[ \t]+)/, "");
  }
  return chunks.filter((chunk) => chunk.trim() !== "");
}
