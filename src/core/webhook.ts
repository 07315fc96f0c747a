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
}
