/** A Markdown code fence line: three or more backticks or tildes, then an info string. */
export interface FenceLine {
  /** The run of backticks or tildes, e.g. "```". */
  marker: string;
  /** What follows the marker, e.g. "ts" (untrimmed). */
  info: string;
}

/** A backtick fence's info string may not contain a backtick; a tilde fence's may. */
const FENCE = /^[ \t]*(?:(`{3,})([^`]*)|(~{3,})(.*))$/;

/** The fence on one line (no "\n" in it), if it is a fence line. */
export function fenceLine(line: string): FenceLine | null {
  const match = FENCE.exec(line);
  if (!match) return null;
  return match[1] !== undefined ? { marker: match[1], info: match[2]! } : { marker: match[3]!, info: match[4]! };
}

/** Whether `line` closes a code block opened with `marker`: the same character, at least as many, nothing after. */
export function closesFence(line: FenceLine, marker: string): boolean {
  return line.marker[0] === marker[0] && line.marker.length >= marker.length && line.info.trim() === "";
}
