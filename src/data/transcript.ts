/**
 * The common shape every transcript parser produces, whatever the input format:
 * episodes cut into scenes, each a list of who said what, plus a count of everything left out.
 */

/** One turn of dialogue, directions already stripped. */
export interface DialogueLine {
  /** Canonical names ("Joey", "Mr. Treeger"); several for `PHOE/MNCA:` or `MONICA and PHOEBE:`. */
  speakers: readonly string[];
  text: string;
}

/** Lines that happen in one place at one time; pairs and LoRA runs never cross a scene boundary. */
export interface Scene {
  episode: string;
  lines: DialogueLine[];
}

export const SKIP_REASONS = [
  "episode title",
  "credits",
  "scene heading",
  "stage direction",
  "writer note",
  "end marker",
  "no speaker label",
  "only stage directions",
  "invalid UTF-8",
  "malformed entry",
] as const;

/** Why a line of input did not become a DialogueLine. Structural lines (titles, headings) are counted too. */
export type SkipReason = (typeof SKIP_REASONS)[number];

export type SkipCounts = Partial<Record<SkipReason, number>>;

export interface Transcript {
  scenes: Scene[];
  skipped: SkipCounts;
}

export function countSkip(counts: SkipCounts, reason: SkipReason, by = 1): void {
  counts[reason] = (counts[reason] ?? 0) + by;
}

export function mergeSkipCounts(into: SkipCounts, from: SkipCounts): void {
  for (const reason of SKIP_REASONS) {
    const n = from[reason];
    if (n) countSkip(into, reason, n);
  }
}

/** Builds scenes line by line; empty scenes are never emitted. */
export class SceneCollector {
  readonly scenes: Scene[] = [];
  private current: Scene | undefined;

  constructor(private episode: string) {}

  add(line: DialogueLine): void {
    if (!this.current) {
      this.current = { episode: this.episode, lines: [] };
      this.scenes.push(this.current);
    }
    this.current.lines.push(line);
  }

  /** The next line starts a new scene. */
  breakScene(): void {
    this.current = undefined;
  }

  startEpisode(episode: string): void {
    this.episode = episode;
    this.breakScene();
  }
}

export function countDialogueLines(scenes: readonly Scene[]): number {
  let n = 0;
  for (const scene of scenes) n += scene.lines.length;
  return n;
}

/** "stage direction: 12, credits: 3" in the fixed order of SKIP_REASONS; "nothing" when empty. */
export function formatSkipCounts(counts: SkipCounts): string {
  const parts = SKIP_REASONS.filter((r) => counts[r]).map((r) => `${r}: ${counts[r]}`);
  return parts.length ? parts.join(", ") : "nothing";
}
