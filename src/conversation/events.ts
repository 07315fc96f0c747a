import type { BackendErrorKind, BackendName } from "../core/backend.ts";

/** Why a message addressed to Friend got no answer of its own. */
export type DropReason = "queue_full" | "shutting_down" | "flood" | "duplicate" | "post_failed" | "reset" | "withdrawn" | "left";

/** What the conversation engine reports, for metrics. */
export type ConversationEvent =
  | { type: "seen"; backend: BackendName }
  | { type: "answered"; backend: BackendName; latencyMs: number; firstTextMs?: number; completionTokens?: number; generationMs: number; fallback: boolean }
  | { type: "coalesced"; backend: BackendName; count: number }
  | { type: "dropped"; backend: BackendName; reason: DropReason }
  | { type: "backend_error"; backend: BackendName; kind: BackendErrorKind }
  | { type: "store_error" };
