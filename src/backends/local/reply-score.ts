import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { BackendError, type GenerateRequest } from "../../core/backend.ts";
import { fitPrompt } from "../prompt-fit.ts";
import { renderScript, scriptLine } from "../prompt.ts";

/** How likely the model finds a given reply: the sum of its tokens' natural-log probabilities. */
export interface ReplyScore {
  /** Tokens of the reply that were scored. */
  tokens: number;
  /** Σ ln p(token | everything before it); the per-token perplexity is exp(−logProb / tokens). */
  logProb: number;
}

/** The smallest positive float32: a probability llama.cpp rounds to 0 is scored as this, not as −∞. */
const FLOAT32_MIN = 1.401298464324817e-45;

/**
 * The most prompt tokens a channel's sequence gives its prompt, next to a reply of up to
 * `maxTokens` (which may use at most half the sequence). One rule for generating and for scoring,
 * so both fit the window to the same prompt.
 */
export function promptBudget(contextSize: number, maxTokens: number, hasFirstToken: boolean): { budget: number; maxTokens: number } {
  const replyTokens = Math.max(1, Math.min(maxTokens, Math.floor(contextSize / 2)));
  return { budget: contextSize - (replyTokens + (hasFirstToken ? 1 : 0) + 1), maxTokens: replyTokens };
}

/**
 * Scores `reply` as the persona's next line after the prompt the local backend would render for
 * `request` (same script rendering, same fitting into the context), from the model's own
 * probabilities: one pass over the prompt and the reply, reading the full next-token distribution
 * (no sampling options, so no temperature, top-k or penalty) at each reply position.
 * Reuses whatever prefix the sequence already holds.
 */
export async function scoreReply(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  firstToken: Token | null,
  request: GenerateRequest,
  reply: string,
  /** The generation's own trim rule, so a window too long for the context is cut where a fresh channel's reply would cut it. */
  trimToFraction: number,
): Promise<ReplyScore> {
  // After "Friend:" the model's reply starts with a space; the reply is one script line, as turns are.
  const replyTokens = model.tokenize(` ${scriptLine(reply)}`, false, "trimLeadingSpace");
  if (replyTokens.length === 0) throw new BackendError("bad_request", "The reply to score is empty.");
  const { budget } = promptBudget(sequence.contextSize, request.maxTokens, firstToken !== null);
  const fit = fitPrompt({
    turns: request.turns,
    budget,
    trimToFraction,
    encode: (turns) => model.tokenize(renderScript(request.persona, turns)),
  });
  const prompt = fit && [...(firstToken === null ? [] : [firstToken]), ...fit.tokens];
  if (!prompt || prompt.length + replyTokens.length > sequence.contextSize) {
    throw new BackendError("bad_request", `The prompt and the reply do not fit the local model's context of ${sequence.contextSize} tokens.`);
  }
  // Everything but the last prompt token goes in as it is (reusing the cached prefix); the last one
  // and the reply's tokens but its last are evaluated asking for the next token's distribution.
  await sequence.adaptStateToTokens(prompt.slice(0, -1), false);
  const rest = prompt.slice(sequence.nextTokenIndex, -1);
  if (rest.length > 0) await sequence.evaluateWithoutGeneratingNewTokens(rest);
  request.signal.throwIfAborted();
  const scored = [prompt.at(-1)!, ...replyTokens.slice(0, -1)];
  const results = await sequence.controlledEvaluate(scored.map((token) => [token, { generateNext: { probabilities: true } }]));
  let logProb = 0;
  replyTokens.forEach((target, i) => {
    const p = results[i]?.next.probabilities?.get(target) ?? 0;
    logProb += Math.log(Math.max(p, FLOAT32_MIN));
  });
  return { tokens: replyTokens.length, logProb };
}
