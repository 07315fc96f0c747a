/**
 * Drives every generation of one llama.cpp context in lockstep, so each decode carries the next
 * token of every channel that is generating.
 *
 * Left to itself, node-llama-cpp dispatches a batch as soon as the first sequence has queued its
 * next token (on the next event-loop turn). The sequences' samplers finish at different moments,
 * so one sequence regularly missed the batch and got a decode of its own: 85–89 decodes for 256
 * tokens over 4 sequences, where 64 suffice. Here one loop asks every active generation for its
 * next token in the same tick, waits for all of them, and only then asks again.
 */
import type { Token } from "node-llama-cpp";

/** How a job ended: the model's end-of-generation token, its `accept` said stop, or its signal aborted. */
export type DecodeJobEnd = "eog" | "stopped" | "aborted";

export interface DecodeJob {
  /**
   * The sequence's token stream, `sequence.evaluate(tokens, sampling)`: its first step evaluates
   * `tokens` (the prompt's tail) and samples, each later step evaluates the last sampled token.
   */
  tokens: AsyncGenerator<Token, void, undefined>;
  /** Gets each sampled token; false ends the job before that token is evaluated. */
  accept(token: Token): boolean;
  /** Ends the job at the next step; the decode in progress cannot be interrupted. */
  signal: AbortSignal;
}

interface Member {
  job: DecodeJob;
  resolve(end: DecodeJobEnd): void;
  reject(err: unknown): void;
}

export class LockstepDecoder {
  private readonly joining: Member[] = [];
  private running = false;

  /** Runs the job with the others in flight; settles once its stream is closed. */
  run(job: DecodeJob): Promise<DecodeJobEnd> {
    return new Promise<DecodeJobEnd>((resolve, reject) => {
      this.joining.push({ job, resolve, reject });
      if (!this.running) void this.loop();
    });
  }

  private async loop(): Promise<void> {
    this.running = true;
    let active: Member[] = [];
    try {
      // Jobs started in the same tick as this one share its first step.
      await Promise.resolve();
      // New jobs join between steps, so a new channel's prompt tail shares a decode with the others' tokens.
      while (active.length > 0 || this.joining.length > 0) {
        active.push(...this.joining.splice(0));
        const ended: Array<[Member, DecodeJobEnd]> = [];
        const stepping = active.filter((m) => {
          if (m.job.signal.aborted) ended.push([m, "aborted"]);
          return !m.job.signal.aborted;
        });
        // All next() calls in one synchronous pass: node-llama-cpp queues them into a single batch.
        const steps = await Promise.allSettled(stepping.map((m) => m.job.tokens.next()));
        const failed = new Set<Member>();
        steps.forEach((step, i) => {
          const member = stepping[i]!;
          if (step.status === "rejected") {
            failed.add(member);
            member.reject(step.reason);
          } else if (step.value.done) {
            ended.push([member, "eog"]);
          } else if (!acceptSafely(member, step.value.value, failed)) {
            if (!failed.has(member)) ended.push([member, "stopped"]);
          }
        });
        const leaving = new Set<Member>([...failed, ...ended.map(([m]) => m)]);
        active = active.filter((m) => !leaving.has(m));
        // Close the finished streams before resolving, so a caller may hand the sequence on at once.
        await Promise.all(ended.map(([m]) => m.job.tokens.return(undefined).catch(() => undefined)));
        for (const [member, end] of ended) member.resolve(end);
      }
    } finally {
      this.running = false;
    }
  }
}

/** A throwing `accept` fails its own job, never the loop that serves the others. */
function acceptSafely(member: Member, token: Token, failed: Set<Member>): boolean {
  try {
    return member.job.accept(token);
  } catch (err) {
    failed.add(member);
    member.reject(err);
    void member.job.tokens.return(undefined).catch(() => undefined);
    return false;
  }
}
