/**
 * Finds the request's stop sequences in streamed model text, the way an API's `stop` works: the
 * text before the first stop is released, the stop and everything after it never are. Text that
 * could still turn out to be the start of a stop is held back until it is decided, so a stream
 * never shows `\nRo` and then takes it back.
 */
export interface StopScan {
  /** Text that is certainly not part of a stop: show it. */
  text: string;
  /** A stop sequence appeared: the generation is over, and `text` is all of the reply that remains. */
  stopped: boolean;
}

export class StopScanner {
  private readonly stops: readonly string[];
  private held = "";
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  push(chunk: string): StopScan {
    if (this.done) return { text: "", stopped: true };
    const text = this.held + chunk;
    const first = this.firstStop(text);
    // Where a stop could still begin: the longest end of the text that starts some stop.
    const undecided = text.length - this.partialStopLength(text);
    // A stop is certain once no longer one could still complete from an earlier position.
    if (first !== -1 && first <= undecided) {
      this.done = true;
      this.held = "";
      return { text: text.slice(0, first), stopped: true };
    }
    this.held = text.slice(undecided);
    return { text: text.slice(0, undecided), stopped: false };
  }

  /** Ends the stream (end of text, token limit): held text is released, up to a stop it holds, if any. */
  flush(): StopScan {
    if (this.done) return { text: "", stopped: true };
    const first = this.firstStop(this.held);
    const scan = first === -1 ? { text: this.held, stopped: false } : { text: this.held.slice(0, first), stopped: true };
    this.held = "";
    this.done = true;
    return scan;
  }

  private firstStop(text: string): number {
    let first = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at !== -1 && (first === -1 || at < first)) first = at;
    }
    return first;
  }

  /** Length of the longest end of `text` that is the beginning of some stop. */
  private partialStopLength(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
