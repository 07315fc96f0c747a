import type { Logger } from "pino";
import { LocalBackend } from "../backends/local.ts";
import type { OpenAIBackend } from "../backends/openai.ts";
import { recentSpeakers, speakerName } from "../core/speakers.ts";
import type { Settings } from "../config/settings.ts";
import type { CastMember } from "../core/cast.ts";
import { countTokens } from "../core/tokens.ts";
import type { Turn } from "../core/turn.ts";
import { Conversation } from "../conversation/conversation.ts";
import type { ReplySink } from "../conversation/session.ts";
import type { EvalItem } from "../data/eval-items.ts";
import { cleanReply } from "../reply/clean.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { cutPieces, hasFollowOnSpeaker, leaksLabel, speakersFor } from "./artefacts.ts";
import type { ContestantSpec } from "./contestant.ts";
import type { Sample, SampleAttempt } from "./metrics.ts";
import { RecordingBackend, type Attempt } from "./recorder.ts";

export interface ContestantRun {
  contestant: ContestantSpec;
  backend: OpenAIBackend | LocalBackend;
  items: readonly EvalItem[];
  /** Settings as the bot would run with them (the run's --temperature already applied). */
  settings: Settings;
  /** Items answered at once: the backend's own concurrency, so local items share the engine's batches. */
  concurrency: number;
  /** Fixes each generation's sampling; derived per item, so the order items run in changes nothing. */
  seed: number;
  logger: Logger;
  /** Ctrl-C: no new items start, and the ones in flight are not recorded. */
  signal: AbortSignal;
  onSample(sample: Sample): void;
}

/** Errors that no later item can escape: the contestant stops with one line. */
const FATAL_KINDS = new Set(["auth", "load"]);

/**
 * Answers every item through the bot's own engine: each item is a channel whose window holds the
 * scene, and the line addressed to the persona arrives as a message. The conversation session
 * renders and fits the prompt, picks the stop sequences, runs the cleaner, regenerates an empty
 * reply once and falls back, exactly as for Discord. Returns why the contestant could not run at
 * all, or null.
 */
export async function runContestant(run: ContestantRun): Promise<string | null> {
  const { backend, settings, contestant } = run;
  const reason = backend instanceof LocalBackend ? await backend.prepare().then(() => null, (err: Error) => err.message) : backend.unavailableReason();
  if (reason) return reason;

  const recorder = new RecordingBackend(backend, (channelId, attempt) => seedFor(run.seed, channelId, attempt));
  const store = new SqliteStore({ path: ":memory:" });
  const conversation = new Conversation({
    settings,
    store,
    backend: () => recorder,
    backends: () => [recorder],
    defaultBackend: contestant.backend,
    concurrency: { openai: run.concurrency, local: run.concurrency },
    userMessagesPerMinute: Number.MAX_SAFE_INTEGER,
    logger: run.logger,
  });
  let fatal: string | null = null;
  const ctx: ItemContext = { conversation, store, recorder, backend, settings, contestant, signal: run.signal };
  const finish = async (item: EvalItem, sample: Sample | null): Promise<void> => {
    if (sample && !run.signal.aborted && sample.error && FATAL_KINDS.has(sample.error.kind)) fatal ??= sample.error.message;
    if (sample && !run.signal.aborted && !fatal) {
      if (backend instanceof LocalBackend && !sample.error) await score(sample, item, ctx, backend);
      if (!run.signal.aborted) run.onSample(sample);
    }
    conversation.reset(`eval:${item.id}`);
  };
  const onInterrupt = (): void => void conversation.close(0);
  run.signal.addEventListener("abort", onInterrupt, { once: true });
  try {
    if (backend instanceof LocalBackend) {
      // Waves: the items of a wave share the engine's batches while they generate; their true
      // replies are scored once none is generating (a scoring pass decoded in the same batches
      // as generations made about 1 in 200 of those end at once with no token, in node-llama-cpp 3.21.1).
      for (let at = 0; at < run.items.length && !fatal && !run.signal.aborted; at += run.concurrency) {
        const wave = run.items.slice(at, at + run.concurrency);
        const samples = await Promise.all(wave.map((item) => answer(item, ctx)));
        for (const [i, item] of wave.entries()) await finish(item, samples[i]!);
      }
    } else {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (!fatal && !run.signal.aborted && next < run.items.length) {
          const item = run.items[next++]!;
          await finish(item, await answer(item, ctx));
        }
      };
      await Promise.all(Array.from({ length: run.concurrency }, worker));
    }
  } finally {
    run.signal.removeEventListener("abort", onInterrupt);
    await conversation.close(0);
    store.close();
  }
  return fatal;
}

interface ItemContext {
  conversation: Conversation;
  store: SqliteStore;
  recorder: RecordingBackend;
  backend: OpenAIBackend | LocalBackend;
  settings: Settings;
  contestant: ContestantSpec;
  signal: AbortSignal;
}

/**
 * The scene as the channel's window: the reply's speaker is the persona, everyone else a user, named
 * as the bot names users (a cast member's name becomes "User Ross", as it would for a Discord user
 * called Ross), so the earlier lines read like the addressed one, which goes through the bot's intake.
 */
export function sceneTurns(item: EvalItem, personaName: string, cast: readonly CastMember[]): Turn[] {
  return item.scene.map((line, i) => {
    const own = line.speaker.trim().toLowerCase() === item.reply.speaker.trim().toLowerCase();
    return { author: own ? personaName : speakerName(line.speaker, personaName, cast), text: line.text, fromFriend: own, at: i + 1, tokens: countTokens(line.text) };
  });
}

async function answer(item: EvalItem, ctx: ItemContext): Promise<Sample | null> {
  const { persona } = ctx.settings;
  const channelId = `eval:${item.id}`;
  const turns = sceneTurns(item, persona.name, ctx.settings.cast);
  if (turns.length) ctx.store.complete(channelId, turns, null);
  let posted: string | undefined;
  const sink: ReplySink = {
    typing: async () => {},
    update: async () => {},
    finish: async (text) => {
      posted = text;
    },
  };
  ctx.conversation.submit(
    { id: `${item.id}/addressed`, channelId, authorId: item.addressed.speaker, authorName: item.addressed.speaker, text: item.addressed.text, at: turns.length + 1 },
    sink,
  );
  await ctx.conversation.idle(channelId);
  const attempts = ctx.recorder.take(channelId);
  if (posted === undefined || ctx.signal.aborted || attempts.length === 0) return null;

  const first = attempts[0]!;
  const names = recentSpeakers(first.request.turns);
  const { cast } = ctx.settings;
  const speakers = speakersFor(persona.name, names, cast);
  const recorded = attempts.map((a) => recordAttempt(a, persona.name, names, cast));
  const failed = attempts.find((a) => a.error);
  const outcome: Sample["outcome"] = failed ? "error" : recorded.every((a) => a.cleaned === "") ? "fallback" : "reply";
  const sample: Sample = {
    contestant: ctx.contestant.name,
    item: item.id,
    outcome,
    posted,
    attempts: recorded,
    labelLeak: !failed && leaksLabel(first.raw, speakers),
    // A generation a stop sequence ended had started another speaker's line: the stop only hid it.
    followOn: !failed && (first.end === "stop" || hasFollowOnSpeaker(first.raw, speakers)),
    emptyAfterClean: !failed && recorded[0]!.cleaned === "",
    ...(failed ? { error: failed.error } : {}),
  };
  firstRequests.set(sample, first.request);
  return sample;
}

/** The request of each sample's first generation: the prompt its true reply is scored after. */
const firstRequests = new WeakMap<Sample, Attempt["request"]>();

/** The held-out perplexity's part for one item: the true reply scored after the exact prompt the bot built. */
async function score(sample: Sample, item: EvalItem, ctx: ItemContext, backend: LocalBackend): Promise<void> {
  const request = firstRequests.get(sample)!;
  try {
    sample.perplexity = await backend.scoreReply({ ...request, signal: ctx.signal }, item.reply.text);
  } catch (err) {
    sample.perplexity = { error: (err as Error).message };
  }
}

function recordAttempt(attempt: Attempt, personaName: string, names: readonly string[], cast: readonly CastMember[]): SampleAttempt {
  // The same cleaner and options the session ran over this text, so `cleaned` is what it decided.
  const cleaned = attempt.error ? "" : cleanReply(attempt.raw, { personaName, windowNames: names, cast });
  return {
    raw: attempt.raw,
    cleaned,
    cut: cutPieces(attempt.raw, cleaned),
    end: attempt.end,
    firstTextMs: attempt.firstTextMs ?? null,
    ms: attempt.ms,
    completionTokens: attempt.completionTokens ?? null,
    ...(attempt.error ? { error: attempt.error } : {}),
  };
}

/** FNV-1a over the run's seed, the item and the attempt: a 32-bit seed that depends on nothing else. */
export function seedFor(seed: number, channelId: string, attempt: number): number {
  let hash = 0x811c9dc5;
  for (const char of `${seed}\u0000${channelId}\u0000${attempt}`) {
    hash ^= char.codePointAt(0)!;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
