import type { CommandIo } from "../../../src/commandline/io.ts";

export interface CapturedIo {
  io: CommandIo;
  out: string[];
  err: string[];
  /** Ctrl-C, as the command sees it. */
  interrupt(): void;
}

/** A CommandIo that records output, with its own env, working folder and Ctrl-C. */
export function captureIo(options: { cwd: string; env?: Record<string, string | undefined>; onOut?: (line: string) => void }): CapturedIo {
  const out: string[] = [];
  const err: string[] = [];
  const controller = new AbortController();
  return {
    io: {
      out: (line) => {
        out.push(line);
        options.onOut?.(line);
      },
      err: (line) => err.push(line),
      env: options.env ?? {},
      cwd: options.cwd,
      interrupt: controller.signal,
    },
    out,
    err,
    interrupt: () => controller.abort(),
  };
}
