import { randomBytes } from "node:crypto";
import type { CastMember } from "../core/cast.ts";
import type { ReplySink } from "../conversation/session.ts";
import { quoteForTerminal, stripControlSequences } from "./control-sequences.ts";

/**
 * Message ids for one terminal chat: `cli:NAME:<pid>-<random>:<ms>:<n>`. Two chats on one channel
 * share its database rows, where an id seen before is a duplicate; the process id and random part
 * keep theirs apart even when both send their n-th line in the same millisecond.
 */
export function terminalMessageIds(channelId: string, instance = `${process.pid}-${randomBytes(4).toString("hex")}`): (at: number) => string {
  let count = 0;
  return (at) => `${channelId}:${instance}:${at}:${++count}`;
}

/** The process id of the chat that made `messageId` (see terminalMessageIds); undefined for any other id. */
export function terminalMessagePid(channelId: string, messageId: string): number | undefined {
  if (!messageId.startsWith(`${channelId}:`)) return undefined;
  const match = /^(\d+)-[0-9a-f]+:\d+:\d+$/.exec(messageId.slice(channelId.length + 1));
  return match ? Number(match[1]) : undefined;
}

/** Where the terminal chat writes; `color` dims the --raw view. */
export interface TerminalOutput {
  write(text: string): void;
  color: boolean;
}

const dim = (out: TerminalOutput, text: string) => (out.color ? `\x1b[2m${text}\x1b[22m` : text);

/**
 * One reply in the terminal: streamed as the cleaner allows (each view is a prefix of the final
 * text, so only the new part is printed), then finished. With `raw`, the model's raw output and
 * what the cleaner cut are shown after it. Model text never reaches the terminal with its
 * control sequences: they are stripped from the reply and escaped in the raw view.
 */
export class TerminalReply implements ReplySink {
  #printed = "";
  #started = false;
  #raw = "";
  /** The label printed before the reply: the character the turn speaks as. */
  #speaker: string;

  constructor(
    private readonly out: TerminalOutput,
    persona: string,
    private readonly showRaw: () => boolean,
  ) {
    this.#speaker = persona;
  }

  speakAs(character: CastMember): void {
    this.#speaker = character.name;
  }

  async typing(): Promise<void> {}

  async notice(text: string): Promise<void> {
    this.out.write(`${dim(this.out, `(${stripControlSequences(text)})`)}\n`);
  }

  async update(text: string): Promise<void> {
    const safe = stripControlSequences(text);
    if (!safe.startsWith(this.#printed)) return; // never taken back: the cleaner guarantees a prefix
    this.#print(safe.slice(this.#printed.length));
    this.#printed = safe;
  }

  async finish(text: string): Promise<void> {
    const safe = stripControlSequences(text);
    if (safe.startsWith(this.#printed)) this.#print(safe.slice(this.#printed.length));
    else this.#print(`${this.#printed ? "\n" : ""}${safe}`); // an error line in place of a cut-off reply
    this.out.write("\n");
    if (this.showRaw() && this.#raw) this.out.write(rawView(this.#raw, text).map((line) => `${dim(this.out, line)}\n`).join(""));
  }

  async sceneLine(character: CastMember, text: string): Promise<void> {
    this.out.write(`${character.name}: ${text}\n`);
  }

  raw(chunk: string): void {
    this.#raw += chunk;
  }

  #print(text: string): void {
    if (!this.#started) {
      this.out.write(`${stripControlSequences(this.#speaker)}: `);
      this.#started = true;
    }
    this.out.write(text);
  }
}

/** The model's raw output and what the cleaner removed around the reply, escaped onto single lines (control characters included). */
export function rawView(raw: string, reply: string): string[] {
  const lines = [`  ┆ raw: ${quoteForTerminal(raw)}`];
  // The reply is the raw text with labels stripped and an invented scene cut: find its last line.
  const tail = reply.split("\n").at(-1)!.trim();
  const end = tail ? raw.lastIndexOf(tail) : -1;
  if (end >= 0) {
    const head = raw.slice(0, Math.max(0, raw.indexOf(reply.split("\n")[0]!.trim())));
    const cutAfter = raw.slice(end + tail.length);
    const cut = [head && quoteForTerminal(head), cutAfter.trim() && quoteForTerminal(cutAfter)].filter(Boolean);
    if (cut.length) lines.push(`  ┆ cut: ${cut.join(" … ")}`);
  }
  return lines;
}
