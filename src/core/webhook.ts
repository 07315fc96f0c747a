/** A channel's webhook: its id, and its token, which lets anyone post as it, so it is never logged. */
export interface WebhookCredentials {
  id: string;
  token: string;
}

/** Where the webhook Friend created in each channel is kept, so a restart reuses it. Calls may throw. */
export interface WebhookStore {
  getWebhook(channelId: string): WebhookCredentials | undefined;
  /** null forgets it (it was deleted on Discord). */
  setWebhook(channelId: string, webhook: WebhookCredentials | null): void;
  /**
   * A webhook message posted as part `part` of the reply to `triggerId`: webhook posts cannot reply
   * to the trigger, so this is how catch-up finds a reply begun before a crash.
   */
  beginWebhookPart(triggerId: string, part: number, messageId: string): void;
  /** The webhook messages of the reply to `triggerId` still unfinished, in order. */
  webhookParts(triggerId: string): string[];
  /** The reply is on Discord in full: its parts need no finding. */
  forgetWebhookParts(triggerId: string): void;
}
