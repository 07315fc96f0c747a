import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ConversationEvent } from "../conversation/events.ts";

/** Friend's Prometheus metrics, in a registry of its own (so two Friends in one test process never clash). */
export class FriendMetrics {
  readonly registry = new Registry();
  readonly #seen = new Counter({ name: "friend_messages_seen_total", help: "Messages addressed to Friend", labelNames: ["backend"], registers: [this.registry] });
  readonly #answered = new Counter({ name: "friend_messages_answered_total", help: "Replies posted", labelNames: ["backend"], registers: [this.registry] });
  readonly #dropped = new Counter({ name: "friend_messages_dropped_total", help: "Messages not answered, by reason", labelNames: ["backend", "reason"], registers: [this.registry] });
  readonly #coalesced = new Counter({ name: "friend_messages_coalesced_total", help: "Messages folded into another message's turn", labelNames: ["backend"], registers: [this.registry] });
  readonly #latency = new Histogram({
    name: "friend_reply_latency_seconds",
    help: "From taking a turn to having the reply ready",
    labelNames: ["backend"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60],
    registers: [this.registry],
  });
  readonly #errors = new Counter({ name: "friend_backend_errors_total", help: "Backend failures after retries, by kind", labelNames: ["backend", "kind"], registers: [this.registry] });
  readonly #storeErrors = new Counter({ name: "friend_store_errors_total", help: "Database writes that failed (Friend carried on)", registers: [this.registry] });
  readonly #localTps = new Gauge({ name: "friend_local_tokens_per_second", help: "Generation speed of the last local reply", registers: [this.registry] });

  /** `queueDepth` and `savedStates` (the local backend's, once loaded) are read at each scrape, never per message. */
  constructor(queueDepth: () => number, savedStates: () => { files: number; bytes: number } | undefined = () => undefined) {
    collectDefaultMetrics({ register: this.registry, prefix: "friend_" });
    new Gauge({
      name: "friend_local_saved_states",
      help: "Channels' KV states saved on disk by the local backend",
      registers: [this.registry],
      collect() {
        this.set(savedStates()?.files ?? 0);
      },
    });
    new Gauge({
      name: "friend_local_saved_state_bytes",
      help: "Disk used by the saved channel KV states",
      registers: [this.registry],
      collect() {
        this.set(savedStates()?.bytes ?? 0);
      },
    });
    new Gauge({
      name: "friend_queue_depth",
      help: "Messages waiting for a reply",
      registers: [this.registry],
      collect() {
        this.set(queueDepth());
      },
    });
  }

  /** Feed for Conversation's onEvent. */
  readonly observe = (event: ConversationEvent): void => {
    switch (event.type) {
      case "seen":
        this.#seen.inc({ backend: event.backend });
        break;
      case "answered":
        this.#answered.inc({ backend: event.backend });
        this.#latency.observe({ backend: event.backend }, event.latencyMs / 1000);
        if (event.backend === "local" && event.completionTokens && event.generationMs > 0) this.#localTps.set((event.completionTokens * 1000) / event.generationMs);
        break;
      case "dropped":
        this.#dropped.inc({ backend: event.backend, reason: event.reason });
        break;
      case "coalesced":
        // The answered message itself is not coalesced; the others in its batch are.
        this.#coalesced.inc({ backend: event.backend }, event.count - 1);
        break;
      case "backend_error":
        this.#errors.inc({ backend: event.backend, kind: event.kind });
        break;
      case "store_error":
        this.#storeErrors.inc();
        break;
    }
  };
}
