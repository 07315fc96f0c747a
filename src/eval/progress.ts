import cliProgress from "cli-progress";

/** Progress through one contestant's items: a bar with an ETA on a terminal, plain lines otherwise. */
export interface Progress {
  start(contestant: string, total: number, done: number): void;
  tick(): void;
  stop(): void;
}

/** A plain line at most this often (and at the end), so a log file stays readable. */
const LINE_EVERY_MS = 10_000;

export function progressFor(stream: NodeJS.WriteStream, line: (text: string) => void): Progress {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { stream, format: "{contestant} [{bar}] {value}/{total} | {percentage}% | ETA {eta_formatted}", hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    let active = false;
    return {
      start: (contestant, total, done) => {
        bar.start(total, done, { contestant });
        active = true;
      },
      tick: () => bar.increment(),
      stop: () => {
        if (active) bar.stop();
        active = false;
      },
    };
  }
  let name = "";
  let total = 0;
  let done = 0;
  let started = 0;
  let startDone = 0;
  let last = 0;
  const report = (): void => {
    const elapsed = (Date.now() - started) / 1000;
    const rate = (done - startDone) / Math.max(elapsed, 1e-3);
    const eta = rate > 0 ? Math.round((total - done) / rate) : null;
    line(`${name}: ${done}/${total} items (${total ? Math.round((done / total) * 100) : 100}%)${eta !== null && done < total ? `, about ${eta} s left` : ""}`);
    last = Date.now();
  };
  return {
    start: (contestant, t, d) => {
      [name, total, done, startDone, started, last] = [contestant, t, d, d, Date.now(), Date.now()];
      line(`${name}: ${done}/${total} items done, starting`);
    },
    tick: () => {
      done++;
      if (Date.now() - last >= LINE_EVERY_MS || done === total) report();
    },
    stop: () => {},
  };
}
