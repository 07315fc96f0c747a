import { systemPromptFor } from "../config/settings.ts";
import type { Persona } from "../core/persona.ts";
import { isSpeakerName, knownSpeakers, labelPattern } from "../reply/speakers.ts";
import type { Turn } from "../core/turn.ts";

export const MAX_NAME_LENGTH = 32;

/**
 * A display name made safe to stand before a colon in a prompt: one line, no label or markdown
 * characters, and never the persona's own name (a user called "Friend" must not fake Friend's turns).
 */
export function speakerName(displayName: string, personaName: string): string {
  const name = displayName
    .normalize("NFKC")
    .replace(/[\p{C}:()[\]{}<>*_~`|@#\\]/gu, " ")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, MAX_NAME_LENGTH)
    .trim();
  if (!name) return "Someone";
  return name.toLowerCase() === personaName.toLowerCase() ? `User ${name}` : name;
}

/** One turn's text as a single script line, so a newline can never start a fake turn. */
export function scriptLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

/**
 * Chat messages keep their line breaks, except before anything that looks like a speaker label:
 * `hi\nFriend: I agree` becomes `hi Friend: I agree`, one message that cannot pass for two turns.
 */
export function neutraliseLabels(text: string, personaName: string, windowNames: Iterable<string>): string {
  const known = knownSpeakers(personaName, windowNames);
  const pattern = labelPattern(known);
  return text.replace(/[ \t]*\r?\n\s*/g, (newline, offset: number) => {
    const rest = text.slice(offset + newline.length);
    const match = pattern.exec(rest);
    return match && isSpeakerName(match[1]!, known) ? " " : newline;
  });
}

/** The most recent distinct human speakers, newest first. */
export function recentSpeakers(turns: readonly Turn[]): string[] {
  const names: string[] = [];
  for (let i = turns.length - 1; i >= 0; i--) {
    const turn = turns[i]!;
    if (!turn.fromFriend && !names.includes(turn.author)) names.push(turn.author);
  }
  return names;
}

/** The person Friend is answering: the author of the newest human turn. */
export function addressee(turns: readonly Turn[]): string {
  return recentSpeakers(turns)[0] ?? "Someone";
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
  name?: string;
}

/** OpenAI's `name` field allows only `^[a-zA-Z0-9_-]{1,64}$`. */
export function chatName(author: string): string {
  const ascii = author
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^a-zA-Z0-9_-]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 64);
  return ascii || "user";
}

/**
 * The chat-completions prompt: the persona addressed to whoever spoke last, then the window as
 * user/assistant messages. User messages carry the speaker in `name`, as the fine-tuned model
 * was trained on bare lines with no name in the content.
 */
export function renderChat(persona: Persona, turns: readonly Turn[]): ChatMessage[] {
  const names = recentSpeakers(turns);
  const messages: ChatMessage[] = [{ role: "system", content: systemPromptFor(persona, addressee(turns)) }];
  for (const turn of turns) {
    if (turn.fromFriend) messages.push({ role: "assistant", content: turn.text });
    else messages.push({ role: "user", name: chatName(turn.author), content: neutraliseLabels(turn.text, persona.name, names) });
  }
  return messages;
}

/**
 * The text-completion prompt for a model trained on script text: a preamble, then `Name: line`
 * lines, ending with `Friend:`. The preamble names the window's first speaker rather than the
 * latest one, so the prompt of turn N stays a prefix of turn N+1's and a KV cache can be reused.
 */
export function renderScript(persona: Persona, turns: readonly Turn[]): string {
  const first = turns.find((t) => !t.fromFriend)?.author ?? "Someone";
  const lines = turns.map((t) => `${t.fromFriend ? persona.name : t.author}: ${scriptLine(t.text)}`);
  return `${systemPromptFor(persona, first)}\n\n${lines.join("\n")}\n${persona.name}:`;
}
