/**
 * Terminal control sequences, removed from model output (and anything else not ours) before the
 * terminal prints it: a model, or a user's earlier message it repeats, must not set the window
 * title, clear the screen, move the cursor, or write the clipboard (OSC 52).
 */

/**
 * A sequence with a payload, from its introducer to its end: CSI (`ESC [` or U+009B) up to its
 * final byte; OSC, DCS, SOS, PM and APC (`ESC ] P X ^ _` or U+009D U+0090 U+0098 U+009E U+009F) up
 * to BEL or ST (`ESC \` or U+009C); any other `ESC x` pair. One cut off (by the end of a reply
 * still streaming, or by a byte that cannot continue it) is removed as far as it goes, so each
 * streamed prefix prints as a prefix of the whole.
 */
const SEQUENCE =
  /(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[\s\S]*?(?:\x07|\x1b\\|\x9c|$)|\x1b[\x20-\x2f]*[\x30-\x7e]?/g;

/** Every C0 control but tab and newline, DEL, and every C1 control: whatever the sequences above left. */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** `text` with every terminal control sequence and control character removed; tab and newline stay. */
export function stripControlSequences(text: string): string {
  return text.replace(SEQUENCE, "").replace(CONTROL, "");
}

/** JSON.stringify escapes C0 controls but passes DEL and C1 through; this escapes those too, for a view of raw text. */
export function quoteForTerminal(text: string): string {
  return JSON.stringify(text).replace(/[\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
