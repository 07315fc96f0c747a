import { processIo, type CommandIo } from "./commandline/io.ts";
import { CommandError } from "./commandline/errors.ts";

/** One `friend` subcommand. `name` may be several words ("data sft"); the longest match wins. */
interface Subcommand {
  name: string;
  summary: string;
  /**
   * Imports the command when it runs, so `friend data sft` never loads discord.js or the OpenAI SDK.
   * The command gets the arguments after the name and returns the exit code.
   */
  load(): Promise<(argv: string[], io: CommandIo) => Promise<number>>;
}

const SUBCOMMANDS: Subcommand[] = [
  { name: "chat", summary: "talk to Friend in the terminal, through the same engine as on Discord", load: async () => (await import("./chat/chat.ts")).runChat },
  { name: "data sft", summary: "build OpenAI chat fine-tuning JSONL from Friends transcripts", load: async () => (await import("./data/commands/data-sft.ts")).runDataSft },
  { name: "data chunks", summary: "build LoRA text chunks JSONL from Friends transcripts", load: async () => (await import("./data/commands/data-chunks.ts")).runDataChunks },
  { name: "data eval", summary: "write held-out evaluation items for `friend eval` from Friends transcripts", load: async () => (await import("./data/commands/data-eval.ts")).runDataEval },
  { name: "eval", summary: "measure how contestant models talk through Friend's own reply path", load: async () => (await import("./eval/command.ts")).runEval },
  { name: "finetune", summary: "validate, upload and run an OpenAI fine-tuning job", load: async () => (await import("./data/commands/finetune.ts")).runFinetune },
  { name: "finetune status", summary: "reattach to a fine-tuning job (--cancel cancels it)", load: async () => (await import("./data/commands/finetune.ts")).runFinetuneStatus },
  { name: "adapter import", summary: "turn a PEFT LoRA adapter into the GGUF adapter Friend loads", load: async () => (await import("./data/commands/adapter.ts")).runAdapterImport },
  { name: "adapter inspect", summary: "show what a GGUF or PEFT LoRA adapter holds: rank, alpha, scale, targets", load: async () => (await import("./data/commands/adapter.ts")).runAdapterInspect },
  { name: "register", summary: "register Friend's slash commands with Discord (start-up does this too)", load: async () => (await import("./discord/register.ts")).runRegister },
];

export function helpText(): string {
  const width = Math.max(...SUBCOMMANDS.map((c) => c.name.length));
  return [
    "Usage: friend <command> [options]",
    "",
    "Commands:",
    ...SUBCOMMANDS.map((c) => `  friend ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `friend <command> --help` for a command's options.",
  ].join("\n");
}

/** Runs the `friend` command line and returns the exit code; errors are printed as one line. */
export async function main(argv: string[], io: CommandIo = processIo()): Promise<number> {
  const [first] = argv;
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    (first === undefined ? io.err : io.out)(helpText());
    return first === undefined ? 2 : 0;
  }
  const command = findSubcommand(argv);
  if (!command) {
    const group = SUBCOMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => `friend ${c.name}`);
    io.err(group.length ? `friend ${first}: give a subcommand: ${group.join(", ")}` : `friend: unknown command "${first}"; run friend --help`);
    return 2;
  }
  try {
    const run = await command.load();
    return await run(argv.slice(command.name.split(" ").length), io);
  } catch (err) {
    io.err(`friend ${command.name}: ${describeError(err, io.env)}`);
    return err instanceof CommandError ? err.exitCode : 1;
  }
}

function findSubcommand(argv: readonly string[]): Subcommand | undefined {
  const matches = SUBCOMMANDS.filter((c) => c.name.split(" ").every((word, i) => argv[i] === word));
  return matches.sort((a, b) => b.name.length - a.name.length)[0];
}

/** The message alone; a stack only for unexpected errors when FRIEND_DEBUG is set. */
function describeError(err: unknown, env: CommandIo["env"]): string {
  if (!(err instanceof Error)) return String(err);
  if (err instanceof CommandError || !env.FRIEND_DEBUG) return err.message;
  return err.stack ?? err.message;
}
