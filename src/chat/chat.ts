import { createInterface } from "node:readline";
import { pino } from "pino";
import { BACKEND_NAMES, type BackendName } from "../core/backend.ts";
import { findCastMember, type CastMember } from "../core/cast.ts";
import { loadConfig, type Config } from "../config/env.ts";
import { ConfigError } from "../config/errors.ts";
import { envWithDotenv, type CommandIo } from "../commandline/io.ts";
import { parseCommandArgs } from "../commandline/args.ts";
import { UsageError } from "../commandline/errors.ts";
import { NOT_DURABLE_YET } from "../conversation/conversation.ts";
import { createEngine, type Engine } from "../engine.ts";
import { createLogger } from "../log.ts";
import { TERMINAL_CHANNEL_PREFIX } from "../core/channel.ts";
import { processAlive } from "../core/process.ts";
import { stripControlSequences } from "./control-sequences.ts";
import { TerminalReply, terminalMessageIds, terminalMessagePid, type TerminalOutput } from "./terminal.ts";

const HELP = `Usage: friend chat [--backend openai|local] [--persona NAME] [--channel NAME] [--name YOURNAME] [--raw]

Talk to Friend in the terminal, through the same engine as on Discord: the same window, backends,
stop sequences, cleaner and database (the conversation is kept as channel cli:NAME).

  --backend   the model to talk to (default: this channel's last choice, else FRIEND_BACKEND)
  --persona   who answers: a cast member of config/friend.json (default: this channel's last choice, else Friend)
  --channel   which terminal conversation to continue (default: default)
  --name      what Friend calls you (default: $USER)
  --raw       also show, dimmed, the model's raw output and what the cleaner cut

In the chat: /reset, /model [openai|local], /persona [NAME], /status, /raw, /quit.
Ctrl-C stops a reply; Ctrl-C at the prompt or Ctrl-D leaves.`;

const COMMANDS = "/reset, /model [openai|local], /persona [NAME], /status, /raw, /quit";

/** After the input closes, closing may take the shutdown grace period and this much more before the process leaves anyway. */
const CLOSE_MARGIN_MS = 5000;
/** Once everything is closed, how long a stray timer (a downloader's retry pause) may keep the process alive. */
const LINGER_MS = 1000;
/** After a Ctrl-C, the chat leaves once the keyboard has been quiet this long (at most the second figure). */
const SIGINT_QUIET_MS = 300;
const SIGINT_QUIET_MAX_MS = 2000;

/** `friend chat`: a terminal is just another place a channel lives. Returns the exit code. */
export async function runChat(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    backend: { type: "string" },
    persona: { type: "string" },
    channel: { type: "string", default: "default" },
    name: { type: "string" },
    raw: { type: "boolean", default: false },
  });
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  if (values.backend !== undefined && !(BACKEND_NAMES as readonly string[]).includes(values.backend)) {
    throw new UsageError(`--backend must be one of ${BACKEND_NAMES.join(", ")}`);
  }
  if (!/^[\w.-]{1,64}$/.test(values.channel)) throw new UsageError("--channel takes letters, digits, '.', '_' and '-' (at most 64)");

  const env = envWithDotenv(io, ".env");
  const channelId = `${TERMINAL_CHANNEL_PREFIX}${values.channel}`;
  let config: Config;
  try {
    // The backend's own variables are checked as at start-up; Discord's are not needed.
    config = loadConfig({ ...env, ...(values.backend ? { FRIEND_BACKEND: values.backend } : {}) }, undefined, { discord: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(err.message);
    return 1;
  }
  // Logs would drown the conversation: quiet unless LOG_LEVEL asks, and then on stderr.
  const logger = env.LOG_LEVEL
    ? createLogger({ level: config.logLevel, secrets: [config.openai.apiKey ?? "", env.HF_TOKEN ?? ""], destination: pino.destination(2) })
    : pino({ enabled: false });
  const persona = values.persona === undefined ? undefined : findCastMember(config.settings.cast, values.persona);
  if (values.persona !== undefined && !persona) {
    io.err(`friend chat: --persona: "${values.persona}" is not in the cast (${config.settings.cast.map((m) => m.name).join(", ")})`);
    return 1;
  }
  const engine = createEngine(config, logger, {}, { userMessagesPerMinute: Number.MAX_SAFE_INTEGER });
  // Ctrl-C is the chat's for as long as the process lives: a storm of them stops the reply and leaves, never kills.
  const sigint = new SigintRouter();
  let code: number | undefined;
  let closed = false;
  let closing = false;
  // Closing is bounded: replies in flight get the grace period, then the process leaves regardless.
  const startClosing = (): void => {
    if (closing) return;
    closing = true;
    const limitMs = config.shutdownGraceMs + CLOSE_MARGIN_MS;
    leaveAfter(limitMs, () => {
      if (closed) return code ?? 1;
      io.err(`friend chat: closing took longer than ${limitMs / 1000} s; leaving anyway`);
      return 1;
    });
  };
  try {
    code = await converse(engine, config, channelId, { name: values.name ?? env.USER ?? "You", raw: values.raw, backend: values.backend as BackendName | undefined, persona }, io, sigint, startClosing);
    return code;
  } finally {
    startClosing();
    await engine.close(config.shutdownGraceMs);
    await sigint.quiet(SIGINT_QUIET_MS, SIGINT_QUIET_MAX_MS);
    closed = true;
    // Nothing is left to do; a stray timer in a library must not keep the terminal waiting.
    leaveAfter(LINGER_MS, () => code ?? 1);
  }
}

/** Exits the process after `ms` unless it has exited by itself by then (the timer does not keep it alive). */
function leaveAfter(ms: number, code: () => number): void {
  setTimeout(() => process.exit(code()), ms).unref();
}

/** Routes SIGINT to the chat's current handler, and swallows it when there is none, so the signal never kills the chat. */
class SigintRouter {
  handler: (() => void) | undefined;
  #lastAt = 0;
  constructor() {
    process.on("SIGINT", () => {
      this.#lastAt = Date.now();
      this.handler?.();
    });
  }

  /**
   * Settles once no Ctrl-C has come for `quietMs` (at once when none came at all), or after `maxMs`.
   * A process that left in the middle of a burst would meet the rest of it while tearing itself
   * down, when Node no longer handles the signal, and die by it.
   */
  async quiet(quietMs: number, maxMs: number): Promise<void> {
    if (this.#lastAt === 0) return;
    const until = Date.now() + maxMs;
    for (let wait = this.#lastAt + quietMs - Date.now(); wait > 0 && Date.now() < until; wait = this.#lastAt + quietMs - Date.now()) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, until - Date.now())));
    }
  }
}

async function converse(
  engine: Engine,
  config: Config,
  channelId: string,
  options: { name: string; raw: boolean; backend?: BackendName; persona?: CastMember | undefined },
  io: CommandIo,
  sigint: SigintRouter,
  /** Called when the chat starts to close: arms the hard exit. */
  closing: () => void,
): Promise<number> {
  const { conversation, backends } = engine;
  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const out: TerminalOutput = { write: (text) => void process.stdout.write(text), color: tty || Boolean(io.env.FORCE_COLOR) };
  // Notes quote error messages, which may quote a server: control sequences go, as from model text.
  const note = (text: string) => out.write(`${out.color ? `\x1b[2m(${stripControlSequences(text)})\x1b[22m` : `(${stripControlSequences(text)})`}\n`);
  let raw = options.raw;

  // Messages left unanswered when an earlier chat was closed belong to a conversation nobody is
  // waiting on; those of another chat still open on this channel are its own to answer (a reused
  // pid errs on the side of keeping them).
  const stale = conversation.dropUnanswered(channelId, (messageId) => {
    const pid = terminalMessagePid(channelId, messageId);
    return pid !== undefined && processAlive(pid);
  });
  if (stale > 0) note(`${stale} message${stale === 1 ? "" : "s"} from last time never got an answer`);
  if (options.backend && options.backend !== conversation.backendOf(channelId)) {
    // Ctrl-C while the model downloads or loads stops that, and the chat ends with the reason.
    sigint.handler = () => void backends.close();
    const reason = await backends.unavailableReason(options.backend);
    if (reason) {
      io.err(`friend chat: the ${options.backend} backend cannot serve: ${stripControlSequences(reason)}`);
      return 1;
    }
    conversation.setBackend(channelId, options.backend);
  }
  if (options.persona) conversation.setPersona(channelId, options.persona);
  const turns = conversation.windowSize(channelId)?.turns;
  note(`talking to ${conversation.personaOf(channelId).name} on ${describe(engine, conversation.backendOf(channelId))}${turns ? `, ${turns} turns remembered` : ""}; ${COMMANDS}`);

  const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, prompt: `${stripControlSequences(options.name)}> `, terminal: tty });
  const prompt = () => tty && rl.prompt();
  let quitting = false;
  const messageId = terminalMessageIds(channelId);

  const commands: Record<string, (arg: string) => Promise<void> | void> = {
    reset: () => {
      const { turns, durable } = conversation.reset(channelId);
      note(`forgot ${turns} turns; fresh start${durable ? "" : `. ${NOT_DURABLE_YET}`}`);
    },
    raw: () => note(`raw output ${(raw = !raw) ? "on" : "off"}`),
    status: () => {
      const name = conversation.backendOf(channelId);
      const window = conversation.windowSize(channelId);
      const local = backends.created().find((b) => b.name === "local")?.describe();
      note(`${describe(engine, name)}; local model ${local?.progress?.text ?? (local?.loaded ? "loaded" : "not loaded")}; window ${window ? `${window.turns} turns, ${window.tokens} tokens` : "unreadable (database error)"}; persona ${conversation.personaOf(channelId).name}`);
    },
    model: async (arg) => {
      if (!arg) return note(`using ${describe(engine, conversation.backendOf(channelId))}`);
      if (!(BACKEND_NAMES as readonly string[]).includes(arg)) return note(`unknown backend "${arg}"; choose one of ${BACKEND_NAMES.join(", ")}`);
      note(`getting ${arg} ready…`);
      const reason = await backends.unavailableReason(arg as BackendName);
      if (reason) return note(`can't switch to ${arg}: ${reason}`);
      conversation.setBackend(channelId, arg as BackendName);
      note(`switched to ${describe(engine, arg as BackendName)}`);
    },
    persona: (arg) => {
      if (!arg) return note(`${conversation.personaOf(channelId).name} answers here; the cast: ${config.settings.cast.map((m) => m.name).join(", ")}`);
      const character = findCastMember(config.settings.cast, arg);
      if (!character) return note(`there's no "${arg}" in the cast; choose one of ${config.settings.cast.map((m) => m.name).join(", ")}`);
      conversation.setPersona(channelId, character);
      note(`${character.name} answers from your next message`);
    },
    quit: () => quit(),
  };

  const quit = (): void => {
    if (quitting) return;
    quitting = true;
    closing();
    rl.close();
  };
  const interrupt = () => {
    // Ctrl-C stops a reply in flight; at the prompt it leaves.
    if (conversation.stopReply(channelId)) return;
    quit();
  };
  rl.on("SIGINT", interrupt);
  sigint.handler = interrupt;

  let work: Promise<void> = Promise.resolve();
  rl.on("line", (line) => {
    const text = line.trim();
    if (!text) return prompt();
    const command = /^\/(\w+)\s*(.*)$/.exec(text);
    if (command) {
      const run = commands[command[1]!.toLowerCase()];
      // Commands run in order, after the ones before them (a /model may be loading a model).
      work = work.then(async () => {
        if (run) await run(command[2]!.trim());
        else note(`commands: ${COMMANDS}`);
        prompt();
      });
      return;
    }
    // One exchange at a time, as in a conversation: the next line waits for this reply.
    work = work.then(async () => {
      if (quitting) return;
      // A model that cannot load (a failed download, a damaged file) says why here, not as a generic error line.
      const backend = conversation.backendOf(channelId);
      if (backends.get(backend).describe().loaded === false) note(`getting ${backend} ready…`);
      const reason = await backends.unavailableReason(backend);
      // Leaving closed the backends under it: nothing to say.
      if (quitting) return;
      if (reason) {
        note(`can't answer on ${backend}: ${reason}; /model ${BACKEND_NAMES.find((b) => b !== backend)} switches`);
        prompt();
        return;
      }
      const sink = new TerminalReply(out, conversation.personaOf(channelId).name, () => raw);
      const at = Date.now();
      conversation.submit({ id: messageId(at), channelId, authorId: channelId, authorName: options.name, text, at }, sink);
      await conversation.idle(channelId);
      prompt();
    });
  });
  prompt();
  await new Promise<void>((resolve) => rl.once("close", resolve));
  // Ctrl-D (or the end of piped input) lets what was typed be answered; Ctrl-C and /quit stop the reply under way.
  if (quitting) conversation.stopReply(channelId);
  // Leaving does not wait for a model still loading for the next line: closing the backends stops it.
  if (!quitting) await work;
  // From here on Ctrl-C has nothing left to stop; the hard exit bounds the close.
  sigint.handler = undefined;
  if (!quitting) closing();
  await conversation.close(config.shutdownGraceMs);
  if (tty) out.write("\n");
  return 0;
}

function describe(engine: Engine, name: BackendName): string {
  const info = engine.backends.get(name).describe();
  return `${info.backend} (${info.model}${info.adapter ? ` + ${info.adapter}` : ""})`;
}

