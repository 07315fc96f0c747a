/**
 * A fake Discord on 127.0.0.1 that an unmodified discord.js 14 Client logs in to.
 *
 * One port serves both halves: REST under /api/v10 (node:http) and the gateway (ws).
 * Tests inject gateway events (messages, interactions) and assert on the REST calls the
 * bot makes. It mimics the real service where a bot could get it wrong: intents gate
 * what is delivered, the bot's own messages echo back, empty or over-long messages and
 * replies to unknown messages get Discord's 400s, and an interaction acks only once.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";

const DISCORD_EPOCH_MS = 1_420_070_400_000;
const Op = { Dispatch: 0, Heartbeat: 1, Identify: 2, Resume: 6, InvalidSession: 9, Hello: 10, HeartbeatAck: 11 } as const;
const Intent = { GuildMessages: 1 << 9, DirectMessages: 1 << 12, MessageContent: 1 << 15 } as const;
const ChannelType = { GuildText: 0, DM: 1, PublicThread: 11 } as const;
/** Discord's per-channel webhook limit. */
const MAX_WEBHOOKS_PER_CHANNEL = 15;
/** Executing one webhook: about 5 posts per 2 seconds, then 429s. */
const WEBHOOK_BUCKET = { limit: 5, windowMs: 2000 } as const;
const MessageType = { Default: 0, Reply: 19 } as const;
const EPHEMERAL_FLAG = 1 << 6;
const LOADING_FLAG = 1 << 7;
const MAX_CONTENT_LENGTH = 2000;
/** View, send, embed, attach, read history, react, use slash commands: what @everyone usually has. */
const EVERYONE_PERMISSIONS = [10n, 11n, 14n, 15n, 16n, 6n, 31n].reduce((bits, bit) => bits | (1n << bit), 0n).toString();

let lastSnowflake = 0n;
/** A real, strictly increasing snowflake: discord.js decodes timestamps from ids and REST buckets match \d{17,19}. */
export function snowflake(): string {
  const fromClock = BigInt(Date.now() - DISCORD_EPOCH_MS) << 22n;
  lastSnowflake = fromClock > lastSnowflake ? fromClock : lastSnowflake + 1n;
  return lastSnowflake.toString();
}

export interface RestCall {
  method: string;
  /** Without the /api/v10 prefix, query stripped, URL-decoded. */
  path: string;
  query: URLSearchParams;
  /** Parsed JSON, or the payload_json of a multipart body, else null. */
  body: any; // tests dig freely into Discord's many body shapes
  /** Files of a multipart body (discord.js sends one per attachment). */
  files: { field: string; filename: string; size: number }[];
  headers: Record<string, string | string[] | undefined>;
  at: number;
  /** The status the fake answered with (429 for an injected rate limit). */
  status: number;
}

export interface FakeUser { id: string; username: string; global_name: string | null; bot: boolean; nick: string | null }
export interface UserPayload { id: string; username: string; discriminator: "0"; global_name: string | null; avatar: null; bot?: true }
export interface MemberPayload { user?: UserPayload; nick: string | null; roles: string[]; joined_at: string; deaf: false; mute: false; flags: 0; permissions?: string }

export interface MessagePayload {
  id: string; channel_id: string; guild_id?: string; author: UserPayload; member?: MemberPayload;
  /** Gateway only. discord.js drops a DM whose channel it has not cached unless this says DM. */
  channel_type?: number;
  content: string; timestamp: string; edited_timestamp: string | null; type: number; tts: false;
  /** Set on messages a webhook posted; their author is the webhook, with the username it was executed with. */
  webhook_id?: string;
  mention_everyone: false; mentions: (UserPayload & { member?: MemberPayload })[]; mention_roles: string[];
  attachments: unknown[]; embeds: unknown[]; components: unknown[]; pinned: false; flags: number;
  message_reference?: { type: 0; message_id: string; channel_id: string; guild_id?: string };
  referenced_message?: MessagePayload;
}

export interface InteractionOption { name: string; type: number; value?: string | number | boolean; focused?: boolean; options?: InteractionOption[] }
export interface InteractionPayload {
  /** 2: a slash command; 4: autocomplete for one of its options (the one marked focused). */
  id: string; application_id: string; type: 2 | 4; token: string; version: 1;
  guild_id?: string; channel_id: string; channel: Record<string, unknown>;
  member?: MemberPayload; user?: UserPayload;
  data: { id: string; name: string; type: 1; options?: InteractionOption[]; guild_id?: string };
  app_permissions: string; locale: string; guild_locale?: string; entitlements: [];
  authorizing_integration_owners: Record<string, string>; context: 0 | 1; attachment_size_limit: number;
}

/** A channel webhook: anyone holding its token can post as it, under any username and avatar. */
export interface FakeWebhook { id: string; token: string; channelId: string; name: string; applicationId: string }

interface StoredMessage {
  payload: MessagePayload;
  /** channel: posted by the bot with POST /channels/:id/messages; interaction: via an interaction token. */
  origin: "injected" | "channel" | "interaction" | "webhook";
  body: unknown;
  edits: unknown[];
}
/** What a client sends on the gateway; only the fields the fake reads. */
interface GatewayPayload { op: number; d?: { token?: string; intents?: number; session_id?: string } | number | null }
/** The parts of a message create/edit body the fake reflects into the message. */
interface MessageBody {
  content?: string | null; embeds?: unknown[] | null; components?: unknown[] | null; flags?: number | null;
  username?: string; avatar_url?: string;
  message_reference?: { message_id?: string; fail_if_not_exists?: boolean };
}
interface RestAnswer { status: number; body?: unknown; headers?: Record<string, string> }
type Handler = (call: RestCall, params: string[]) => RestAnswer;
interface Route { method: string; pattern: RegExp; handler: Handler }
interface RateLimitRule { matches: (c: { method: string; path: string }) => boolean; left: number; retryAfterSeconds: number }
interface RestWaiter { matches: (c: RestCall) => boolean; resolve: (c: RestCall) => void }

const ok = (body: unknown): RestAnswer => ({ status: 200, body });
const noContent: RestAnswer = { status: 204 };
const notFound = (message: string, code: number): RestAnswer => ({ status: 404, body: { message, code } });
const missingAccess: RestAnswer = { status: 403, body: { message: "Missing Access", code: 50001 } };
const base64 = (text: string) => Buffer.from(text).toString("base64").replace(/=+$/, "");
const now = () => new Date().toISOString();

export interface FakeDiscordOptions {
  /** HELLO's heartbeat_interval. Default 41_250, as real Discord. */
  heartbeatIntervalMs?: number;
  /** Echo the bot's own posts and edits as MESSAGE_CREATE / MESSAGE_UPDATE, as real Discord does. Default true. */
  echoBotMessages?: boolean;
}

export class FakeDiscord {
  readonly apiUrl: string;
  readonly gatewayUrl: string;
  readonly botUser: FakeUser;
  readonly token: string;
  readonly applicationId: string;
  readonly guildId = snowflake();
  readonly channelIds: string[] = [];
  readonly rest: RestCall[] = [];

  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<WebSocket>();
  private readonly users = new Map<string, FakeUser>();
  private readonly channelNames = new Map<string, string>();
  /** Thread id → its parent channel's id. */
  private readonly threads = new Map<string, string>();
  /** Every webhook, by id, until deleted. */
  private readonly webhooks = new Map<string, FakeWebhook>();
  /** Channels where the bot lacks Manage Webhooks. */
  private readonly webhooksDenied = new Set<string>();
  /** Each webhook's recent executions, for its rate-limit bucket. */
  private readonly webhookUses = new Map<string, number[]>();
  /** Set once the bot was removed from the guild: its channels answer 403 Missing Access. */
  private leftGuild = false;
  private readonly dmChannels = new Map<string, string>(); // user id → DM channel id
  private readonly messages = new Map<string, StoredMessage>();
  private readonly interactions = new Map<string, { payload: InteractionPayload; acked: boolean; originalId?: string }>();
  private readonly commands = new Map<string, unknown[]>(); // route path → last registered set
  private readonly commandIds = new Map<string, string>(); // command name → stable id
  private readonly rateLimits: RateLimitRule[] = [];
  private readonly socketClosures: { matches: (c: { method: string; path: string }) => boolean; left: number }[] = [];
  private readonly waiters = new Set<RestWaiter>();
  private readonly routes: Route[] = [];
  private readonly owner: FakeUser;
  private readonly heartbeatIntervalMs: number;
  private readonly echoBotMessages: boolean;
  /** The socket of the current session, once it has identified or resumed. */
  private live: WebSocket | null = null;
  /** Dispatches injected while no session socket was open: delivered after the next READY or RESUME. */
  private pending: { t: string; d: unknown }[] = [];
  private sessionId: string | null = null;
  private seq = 0;
  private intents = 0;
  private identifyCount = 0;
  private resumeCount = 0;

  static async start(opts: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return new FakeDiscord(server, opts);
  }

  private constructor(private readonly server: Server, opts: FakeDiscordOptions) {
    const { port } = server.address() as AddressInfo;
    this.apiUrl = `http://127.0.0.1:${port}/api`;
    this.gatewayUrl = `ws://127.0.0.1:${port}`; // bare: the client appends ?v=10&encoding=json
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 41_250;
    this.echoBotMessages = opts.echoBotMessages ?? true;
    this.botUser = this.user({ name: "Friend", bot: true });
    this.applicationId = this.botUser.id; // true of every modern bot application
    this.token = `${base64(this.botUser.id)}.${randomBytes(4).toString("base64url")}.${randomBytes(20).toString("base64url")}`;
    this.owner = this.user({ name: "gunther" });
    for (let i = 0; i < 4; i++) this.addChannel();
    server.on("request", (req, res) => void this.handleHttp(req, res));
    this.wss = new WebSocketServer({ server });
    this.wss.on("connection", (socket) => this.acceptGateway(socket));
    this.defineRoutes();
  }

  // ─── Test-facing API ────────────────────────────────────────────────────────

  /** How many IDENTIFY (op 2) the gateway received. */
  get identifies(): number { return this.identifyCount; }
  /** How many RESUME (op 6) the gateway received. */
  get resumes(): number { return this.resumeCount; }

  user(opts: { name: string; globalName?: string; bot?: boolean; nick?: string }): FakeUser {
    const user = { id: snowflake(), username: opts.name, global_name: opts.globalName ?? null, bot: opts.bot ?? false, nick: opts.nick ?? null };
    this.users.set(user.id, user);
    return user;
  }

  /** A new guild text channel: part of GUILD_CREATE before the first login, a CHANNEL_CREATE after. */
  addChannel(name = `channel-${this.channelIds.length + 1}`): string {
    const id = snowflake();
    this.channelIds.push(id);
    this.channelNames.set(id, name);
    if (this.sessionId) this.dispatch("CHANNEL_CREATE", this.channelPayload(id));
    return id;
  }

  /** A public thread under a guild channel: part of GUILD_CREATE before the first login, a THREAD_CREATE after. */
  addThread(parentId: string, name = `thread-${this.threads.size + 1}`): string {
    const id = snowflake();
    this.threads.set(id, parentId);
    this.channelNames.set(id, name);
    if (this.sessionId) this.dispatch("THREAD_CREATE", { ...this.channelPayload(id), newly_created: true });
    return id;
  }

  /** Takes Manage Webhooks from the bot in one channel: creating or listing webhooks there gets 403. */
  denyManageWebhooks(channelId: string): void {
    this.webhooksDenied.add(channelId);
  }

  /** A webhook someone else made (another integration), e.g. to fill a channel up to its limit. */
  addForeignWebhook(channelId: string, name = "Captain Hook"): FakeWebhook {
    return this.createWebhook(channelId, name, snowflake());
  }

  /** Deletes a webhook behind the bot's back: executing it then gets 404 Unknown Webhook. */
  deleteWebhook(id: string): void {
    this.webhooks.delete(id);
  }

  /** The webhooks of a channel, oldest first. */
  channelWebhooks(channelId: string): FakeWebhook[] {
    return [...this.webhooks.values()].filter((w) => w.channelId === channelId);
  }

  /** Posts as a webhook (any, e.g. a foreign one) and delivers the MESSAGE_CREATE, as Discord does. */
  postAsWebhook(webhook: FakeWebhook, content: string, username = webhook.name): MessagePayload {
    return this.executeWebhook(webhook, webhook.channelId, { content, username }).payload;
  }

  /** What webhooks posted in a channel (a thread's own id for thread posts), in order, with edits applied. */
  webhookMessages(channelId: string): { id: string; content: string; body: any; edits: unknown[]; webhookId: string; username: string }[] {
    return [...this.messages.values()]
      .filter((m) => m.origin === "webhook" && m.payload.channel_id === channelId)
      .map((m) => ({ id: m.payload.id, content: m.payload.content, body: m.body, edits: m.edits, webhookId: m.payload.webhook_id!, username: m.payload.author.username }));
  }

  /** A user deletes their message: it is gone, and the bot gets MESSAGE_DELETE, as from real Discord. */
  deleteMessage(messageId: string): void {
    const stored = this.messages.get(messageId);
    if (!stored) throw new Error(`no message ${messageId} to delete`);
    this.messages.delete(messageId);
    const { channel_id, guild_id } = stored.payload;
    this.dispatch("MESSAGE_DELETE", { id: messageId, channel_id, ...(guild_id ? { guild_id } : {}) });
  }

  /** A moderator bulk-deletes messages of a guild channel: one MESSAGE_DELETE_BULK. */
  bulkDelete(channelId: string, messageIds: readonly string[]): void {
    for (const id of messageIds) this.messages.delete(id);
    this.dispatch("MESSAGE_DELETE_BULK", { ids: [...messageIds], channel_id: channelId, guild_id: this.guildId });
  }

  /** A user edits their message: MESSAGE_UPDATE with the whole message, as real Discord sends it now. */
  editMessage(messageId: string, content: string, opts: { mentions?: FakeUser[] } = {}): MessagePayload {
    const stored = this.messages.get(messageId);
    if (!stored || stored.origin !== "injected") throw new Error(`no user message ${messageId} to edit`);
    const p = stored.payload;
    p.content = content;
    p.edited_timestamp = now();
    if (opts.mentions) p.mentions = opts.mentions.map((u) => (p.guild_id ? { ...userPayload(u), member: this.member(u) } : userPayload(u)));
    this.dispatch("MESSAGE_UPDATE", p);
    return p;
  }

  /**
   * Deletes a guild channel (CHANNEL_DELETE) or a thread (THREAD_DELETE). A channel's threads go
   * with it and its messages with them, without events of their own. `whileOffline`: the bot is
   * not connected, and Discord will not replay the event to its next session.
   */
  deleteChannel(channelId: string, { whileOffline = false } = {}): void {
    const parent = this.threads.get(channelId);
    const gone = new Set([channelId, ...[...this.threads].filter(([, p]) => p === channelId).map(([id]) => id)]);
    if (!whileOffline && parent) this.dispatch("THREAD_DELETE", { id: channelId, guild_id: this.guildId, parent_id: parent, type: ChannelType.PublicThread });
    else if (!whileOffline) this.dispatch("CHANNEL_DELETE", this.channelPayload(channelId));
    for (const id of gone) this.threads.delete(id);
    if (!parent) this.channelIds.splice(this.channelIds.indexOf(channelId), 1);
    for (const [id, m] of this.messages) if (gone.has(m.payload.channel_id)) this.messages.delete(id);
  }

  /**
   * The bot is removed from the guild: GUILD_DELETE without `unavailable` (an outage would set it).
   * `whileOffline`: no event; the guild is simply absent from the next READY.
   */
  leaveGuild({ whileOffline = false } = {}): void {
    this.leftGuild = true;
    if (!whileOffline) this.dispatch("GUILD_DELETE", { id: this.guildId });
  }

  /** The DM channel between the bot and a user (the same one POST /users/@me/channels returns). */
  dmChannelId(user: FakeUser): string {
    let id = this.dmChannels.get(user.id);
    if (!id) this.dmChannels.set(user.id, (id = snowflake()));
    return id;
  }

  /**
   * Injects a MESSAGE_CREATE. With dm, a channelId that names a guild channel is replaced by the
   * author's DM channel; an unknown one becomes that author's DM channel.
   */
  sendMessage(opts: {
    channelId: string; author: FakeUser; content: string; mentions?: FakeUser[];
    referencedMessageId?: string; dm?: boolean; type?: number; id?: string;
  }): MessagePayload {
    let channelId = opts.channelId;
    if (opts.dm && (this.isGuildChannel(channelId) || !/^\d{17,19}$/.test(channelId))) channelId = this.dmChannelId(opts.author);
    else if (opts.dm) this.dmChannels.set(opts.author.id, channelId);
    const guildId = opts.dm ? undefined : this.guildId;
    const threadType = this.threads.has(channelId) ? ChannelType.PublicThread : ChannelType.GuildText;
    const referenced = opts.referencedMessageId ? this.messages.get(opts.referencedMessageId)?.payload : undefined;
    const payload: MessagePayload = {
      ...this.messageBase(opts.id ?? snowflake(), channelId, opts.author, opts.content),
      type: opts.type ?? (opts.referencedMessageId ? MessageType.Reply : MessageType.Default),
      mentions: (opts.mentions ?? []).map((u) => (guildId ? { ...userPayload(u), member: this.member(u) } : userPayload(u))),
    };
    if (guildId) Object.assign(payload, { guild_id: guildId, member: this.member(opts.author), channel_type: threadType });
    else payload.channel_type = ChannelType.DM;
    if (opts.referencedMessageId) {
      payload.message_reference = { type: 0, message_id: opts.referencedMessageId, channel_id: channelId, ...(guildId && { guild_id: guildId }) };
      // Discord nests the referenced message one level deep only.
      if (referenced) payload.referenced_message = { ...referenced, referenced_message: undefined };
    }
    this.messages.set(payload.id, { payload, origin: "injected", body: null, edits: [] });
    this.dispatch("MESSAGE_CREATE", payload);
    return payload;
  }

  /** Sends a message's MESSAGE_CREATE again, as Discord replays missed events after a RESUME. */
  redeliver(messageId: string): void {
    const stored = this.messages.get(messageId);
    if (!stored) throw new Error(`no message ${messageId} to redeliver`);
    this.dispatch("MESSAGE_CREATE", stored.payload);
  }

  /**
   * Injects a chat-input INTERACTION_CREATE. dm sends it from the user's DM with the bot (context 1);
   * autocomplete sends the suggestions request for the option marked focused (answered with type 8).
   */
  sendInteraction(opts: {
    channelId: string; user: FakeUser; name: string; options?: InteractionOption[]; permissions?: string; dm?: boolean; autocomplete?: boolean;
  }): InteractionPayload {
    const dmChannelId = opts.dm ? this.dmChannelId(opts.user) : undefined;
    const common = {
      id: snowflake(), application_id: this.applicationId, type: opts.autocomplete ? (4 as const) : (2 as const), token: `aW50ZXJhY3Rpb24${randomBytes(48).toString("base64url")}`,
      version: 1 as const, app_permissions: EVERYONE_PERMISSIONS, locale: "en-US", entitlements: [] as [], attachment_size_limit: 10_485_760,
      data: { id: this.commandId(opts.name), name: opts.name, type: 1 as const, ...(opts.options && { options: opts.options }) },
    };
    const payload: InteractionPayload = dmChannelId
      ? { ...common, channel_id: dmChannelId, channel: { id: dmChannelId, type: ChannelType.DM, recipients: [userPayload(opts.user)] },
          user: userPayload(opts.user), authorizing_integration_owners: { "0": "0" }, context: 1 }
      : { ...common, guild_id: this.guildId, channel_id: opts.channelId, channel: this.channelPayload(opts.channelId), guild_locale: "en-US",
          member: { ...this.member(opts.user), user: userPayload(opts.user), permissions: opts.permissions ?? EVERYONE_PERMISSIONS },
          authorizing_integration_owners: { "0": this.guildId }, context: 0 };
    this.interactions.set(payload.token, { payload, acked: false });
    this.dispatch("INTERACTION_CREATE", payload);
    return payload;
  }

  waitForRest(matches: (c: RestCall) => boolean, timeoutMs = 10_000): Promise<RestCall> {
    const already = this.rest.find(matches);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const waiter: RestWaiter = { matches, resolve: (c) => (clearTimeout(timer), resolve(c)) };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const seen = this.rest.map((c) => `  ${c.status} ${c.method} ${c.path}`).join("\n") || "  (none)";
        reject(new Error(`FakeDiscord: no matching REST call within ${timeoutMs} ms. Recorded calls:\n${seen}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** What the bot posted in a channel, in posting order, with edits applied; body is the POST body. */
  botMessages(channelId: string): { id: string; content: string; body: any; edits: unknown[] }[] {
    return [...this.messages.values()]
      .filter((m) => m.origin === "channel" && m.payload.channel_id === channelId)
      .map((m) => ({ id: m.payload.id, content: m.payload.content, body: m.body, edits: m.edits }));
  }

  /** Closes the session socket with 4000 (unknown error), which discord.js answers by resuming. */
  dropConnection(): void {
    const socket = this.live;
    this.live = null;
    socket?.close(4000, "FakeDiscord dropped the connection");
  }

  rateLimitNext(matches: (c: { method: string; path: string }) => boolean, count: number, retryAfterSeconds: number): void {
    this.rateLimits.push({ matches, left: count, retryAfterSeconds });
  }

  /**
   * The next `count` matching requests get their socket closed without an answer and are not
   * carried out: undici's "other side closed", as when a keep-alive socket died under a request.
   */
  closeSocketOnNext(matches: (c: { method: string; path: string }) => boolean, count = 1): void {
    this.socketClosures.push({ matches, left: count });
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections(); // undici keeps connections alive; close() would wait on them
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ─── Gateway ────────────────────────────────────────────────────────────────

  private acceptGateway(socket: WebSocket): void {
    this.sockets.add(socket);
    socket.on("close", () => {
      this.sockets.delete(socket);
      if (this.live === socket) this.live = null;
    });
    socket.on("message", (raw) => this.onGatewayPayload(socket, JSON.parse(raw.toString()) as GatewayPayload));
    socket.send(JSON.stringify({ op: Op.Hello, d: { heartbeat_interval: this.heartbeatIntervalMs } }));
  }

  private onGatewayPayload(socket: WebSocket, { op, d: raw }: GatewayPayload): void {
    const d = typeof raw === "object" && raw !== null ? raw : {};
    if (op === Op.Heartbeat) {
      socket.send(JSON.stringify({ op: Op.HeartbeatAck }));
    } else if (op === Op.Identify) {
      this.identifyCount++;
      if (d.token !== this.token) return socket.close(4004, "Authentication failed.");
      this.sessionId = randomBytes(16).toString("hex");
      this.seq = 0;
      this.intents = Number(d.intents ?? 0);
      this.live = socket;
      this.sendDispatch(socket, "READY", {
        v: 10, user: { ...userPayload(this.botUser), verified: true, mfa_enabled: false, flags: 0 },
        guilds: this.leftGuild ? [] : [{ id: this.guildId, unavailable: true }], session_id: this.sessionId, resume_gateway_url: this.gatewayUrl,
        shard: [0, 1], application: { id: this.applicationId, flags: 0 }, private_channels: [], relationships: [],
      });
      if (!this.leftGuild) this.sendDispatch(socket, "GUILD_CREATE", this.guildPayload());
      this.flushPending(socket);
    } else if (op === Op.Resume) {
      this.resumeCount++;
      if (d.session_id !== this.sessionId) return void socket.send(JSON.stringify({ op: Op.InvalidSession, d: false }));
      this.live = socket;
      this.flushPending(socket); // Discord replays missed events, then says RESUMED
      this.sendDispatch(socket, "RESUMED", {});
    }
  }

  private dispatch(t: string, d: unknown): void {
    if (this.live?.readyState === WebSocket.OPEN) this.sendDispatch(this.live, t, d);
    else this.pending.push({ t, d });
  }

  private flushPending(socket: WebSocket): void {
    const pending = this.pending;
    this.pending = [];
    for (const { t, d } of pending) this.sendDispatch(socket, t, d);
  }

  private sendDispatch(socket: WebSocket, t: string, d: unknown): void {
    const visible = this.applyIntents(t, d);
    if (visible !== null) socket.send(JSON.stringify({ op: Op.Dispatch, t, s: ++this.seq, d: visible }));
  }

  /** Real Discord drops messages without the matching intent, and blanks their content without MessageContent. */
  private applyIntents(t: string, d: unknown): unknown {
    if (!t.startsWith("MESSAGE_")) return d;
    const message = d as MessagePayload;
    if (!(this.intents & (message.guild_id ? Intent.GuildMessages : Intent.DirectMessages))) return null;
    const readable = this.intents & Intent.MessageContent || !message.guild_id || message.author?.id === this.botUser.id
      || message.mentions?.some((u) => u.id === this.botUser.id);
    return readable ? d : { ...message, content: "", embeds: [], attachments: [], components: [] };
  }

  // ─── REST ───────────────────────────────────────────────────────────────────

  private async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const call: RestCall = {
      method: req.method ?? "GET", path: decodeURIComponent(url.pathname.replace(/^\/api(\/v\d+)?/, "")),
      query: url.searchParams, body: null, files: [], headers: { ...req.headers }, at: Date.now(), status: 0,
    };
    let reply: RestAnswer;
    const closure = this.socketClosures.find((r) => r.left > 0 && r.matches(call));
    if (closure) {
      closure.left--;
      await readBody(req).catch(() => undefined);
      call.status = -1;
      this.rest.push(call);
      req.socket.destroy();
      return;
    }
    try {
      Object.assign(call, await readBody(req));
      reply = this.takeRateLimit(call) ?? this.authorize(call) ?? this.route(call);
    } catch (error) {
      reply = { status: 500, body: { message: `FakeDiscord failed: ${String(error)}`, code: 0 } };
    }
    call.status = reply.status;
    this.rest.push(call);
    for (const waiter of this.waiters) if (waiter.matches(call)) (this.waiters.delete(waiter), waiter.resolve(call));
    // A 204 must carry no JSON content-type, or undici throws an uncaught SyntaxError.
    const headers = reply.body === undefined ? { ...reply.headers } : { "content-type": "application/json", ...reply.headers };
    res.writeHead(reply.status, headers).end(reply.body === undefined ? undefined : JSON.stringify(reply.body));
  }

  private takeRateLimit(call: RestCall): RestAnswer | null {
    const rule = this.rateLimits.find((r) => r.left > 0 && r.matches(call));
    if (!rule) return null;
    rule.left--;
    const body = { message: "You are being rate limited.", retry_after: rule.retryAfterSeconds, global: false };
    return { status: 429, body, headers: { "retry-after": String(rule.retryAfterSeconds), "x-ratelimit-scope": "user" } };
  }

  /** Interaction callbacks and webhooks carry no Authorization header; everything else needs the bot token. */
  private authorize(call: RestCall): RestAnswer | null {
    if (/^\/(interactions|webhooks)\//.test(call.path) || call.headers.authorization === `Bot ${this.token}`) return null;
    return { status: 401, body: { message: "401: Unauthorized", code: 0 } };
  }

  private route(call: RestCall): RestAnswer {
    for (const { method, pattern, handler } of this.routes) {
      const match = call.method === method ? pattern.exec(call.path) : null;
      if (match) return handler(call, match.slice(1) as string[]);
    }
    return notFound("404: Not Found", 0);
  }

  private defineRoutes(): void {
    const on = (method: string, path: string, handler: Handler) =>
      this.routes.push({ method, pattern: new RegExp(`^${path.replace(/:\w+/g, "([^/]+)")}$`), handler });
    const gateway = { url: this.gatewayUrl, shards: 1, session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 } };

    on("GET", "/gateway/bot", () => ok(gateway));
    on("GET", "/gateway", () => ok({ url: this.gatewayUrl }));
    on("GET", "/users/@me", () => ok({ ...userPayload(this.botUser), verified: true, flags: 0 }));
    on("GET", "/applications/@me", () => ok({ id: this.applicationId, name: this.botUser.username, icon: null, description: "",
      bot_public: true, bot_require_code_grant: false, flags: 0, owner: userPayload(this.owner), bot: userPayload(this.botUser) }));
    on("POST", "/users/@me/channels", ({ body }) => {
      const user = this.users.get(String(body?.recipient_id));
      return user ? ok({ id: this.dmChannelId(user), type: ChannelType.DM, last_message_id: null, flags: 0, recipients: [userPayload(user)] })
        : { status: 400, body: { message: "Invalid Recipient(s)", code: 50033 } };
    });

    on("GET", "/channels/:id", (_, [id]) => {
      if (this.isGuildChannel(id!)) return this.leftGuild ? missingAccess : ok(this.channelPayload(id!));
      const dm = [...this.dmChannels.entries()].find(([, channelId]) => channelId === id);
      const user = dm && this.users.get(dm[0]);
      return user ? ok({ id, type: ChannelType.DM, last_message_id: null, flags: 0, recipients: [userPayload(user)] }) : notFound("Unknown Channel", 10003);
    });
    on("GET", "/channels/:id/messages", ({ query }, [id]) => ok(this.history(id!, query)));
    on("POST", "/channels/:id/messages", (call, [id]) => {
      if (this.leftGuild && this.isGuildChannel(id!)) return missingAccess;
      if (!this.isGuildChannel(id!) && ![...this.dmChannels.values()].includes(id!)) return notFound("Unknown Channel", 10003);
      const invalid = this.rejectMessageBody(id!, call.body, call.files);
      if (invalid) return invalid;
      const stored = this.storeBotMessage(id!, call.body, "channel", call.files);
      if (this.echoBotMessages) this.dispatch("MESSAGE_CREATE", this.asGatewayMessage(stored.payload));
      return ok(stored.payload);
    });
    on("GET", "/channels/:id/messages/:mid", (_, [id, mid]) => {
      const m = this.messages.get(mid!);
      return m && m.payload.channel_id === id ? ok(m.payload) : notFound("Unknown Message", 10008);
    });
    on("PATCH", "/channels/:id/messages/:mid", (call, [id, mid]) => {
      const m = this.messages.get(mid!);
      if (!m || m.payload.channel_id !== id) return notFound("Unknown Message", 10008);
      if (m.payload.author.id !== this.botUser.id) return { status: 403, body: { message: "Cannot edit a message authored by another user", code: 50005 } };
      return this.rejectEdit(m, call.body) ?? this.applyEdit(m, call.body, true);
    });
    on("DELETE", "/channels/:id/messages/:mid", (_, [id, mid]) => {
      const m = this.messages.get(mid!);
      if (!m || m.payload.channel_id !== id) return notFound("Unknown Message", 10008);
      if (m.payload.author.id !== this.botUser.id) return { status: 403, body: { message: "Missing Permissions", code: 50013 } };
      this.messages.delete(mid!);
      this.dispatch("MESSAGE_DELETE", { id: mid, channel_id: id, ...(m.payload.guild_id ? { guild_id: m.payload.guild_id } : {}) });
      return noContent;
    });
    on("POST", "/channels/:id/typing", () => noContent);

    for (const path of ["/applications/:app/commands", "/applications/:app/guilds/:guild/commands"]) {
      on("PUT", path, (call, [, guildId]) => ok(this.registerCommands(call.path, call.body, guildId)));
      on("GET", path, (call) => ok(this.commands.get(call.path) ?? []));
    }

    on("POST", "/interactions/:id/:token/callback", (call, [, token]) => {
      const interaction = this.interactions.get(token!);
      if (!interaction) return notFound("Unknown interaction", 10062);
      if (interaction.acked) return { status: 400, body: { message: "Interaction has already been acknowledged.", code: 40060 } };
      const { type, data } = call.body as { type: number; data?: MessageBody };
      // Suggestions are only ever the answer to an autocomplete request, and a command never gets them.
      if ((type === 8) !== (interaction.payload.type === 4)) return { status: 400, body: { message: "Invalid Form Body", code: 50035 } };
      const invalid = type === 4 ? this.rejectMessageBody(interaction.payload.channel_id, data ?? null, call.files) : null;
      if (invalid) return invalid;
      interaction.acked = true;
      let message: MessagePayload | undefined;
      if (type === 4 || type === 5) {
        const body = type === 5 ? { content: "", flags: (data?.flags ?? 0) | LOADING_FLAG } : (data ?? null);
        message = this.storeBotMessage(interaction.payload.channel_id, body, "interaction").payload;
        interaction.originalId = message.id;
      }
      if (call.query.get("with_response") !== "true") return noContent;
      return ok({
        interaction: { id: interaction.payload.id, type: 2, activity_instance_id: null, response_message_id: message?.id ?? null,
          response_message_loading: type === 5, response_message_ephemeral: Boolean((message?.flags ?? 0) & EPHEMERAL_FLAG) },
        ...(message && { resource: { type, message } }),
      });
    });
    const webhookMessage = (token: string, mid: string) => {
      const id = mid === "@original" ? this.interactions.get(token)?.originalId : mid;
      return id ? this.messages.get(id) : undefined;
    };
    on("PATCH", "/webhooks/:app/:token/messages/:mid", (call, [id, token, mid]) => {
      const hook = this.webhookFor(id!, token!);
      if (hook) return "status" in hook ? hook : this.editWebhookMessage(hook, mid!, call);
      const m = webhookMessage(token!, mid!);
      return m ? (this.rejectEdit(m, call.body) ?? this.applyEdit(m, call.body, false)) : notFound("Unknown Message", 10008);
    });
    on("DELETE", "/webhooks/:app/:token/messages/:mid", (call, [id, token, mid]) => {
      const hook = this.webhookFor(id!, token!);
      if (!hook) return notFound("Unknown Webhook", 10015);
      if ("status" in hook) return hook;
      const m = this.messages.get(mid!);
      if (!m || m.payload.webhook_id !== hook.id || m.payload.channel_id !== (call.query.get("thread_id") ?? hook.channelId)) return notFound("Unknown Message", 10008);
      this.messages.delete(mid!);
      this.dispatch("MESSAGE_DELETE", { id: mid, channel_id: m.payload.channel_id, guild_id: this.guildId });
      return noContent;
    });
    on("POST", "/channels/:id/webhooks", (call, [id]) => {
      if (!this.isGuildChannel(id!)) return notFound("Unknown Channel", 10003);
      if (this.threads.has(id!)) return { status: 400, body: { message: "Cannot execute action on this channel type", code: 50024 } };
      if (this.webhooksDenied.has(id!)) return { status: 403, body: { message: "Missing Permissions", code: 50013 } };
      if (this.channelWebhooks(id!).length >= MAX_WEBHOOKS_PER_CHANNEL) {
        return { status: 400, body: { message: `Maximum number of webhooks reached (${MAX_WEBHOOKS_PER_CHANNEL})`, code: 30007 } };
      }
      const name = String(call.body?.name ?? "");
      if (!name || /clyde|discord/i.test(name)) return { status: 400, body: { message: "Invalid Form Body", code: 50035 } };
      return ok(this.webhookPayload(this.createWebhook(id!, name, this.applicationId)));
    });
    on("GET", "/channels/:id/webhooks", (_, [id]) => {
      if (!this.isGuildChannel(id!)) return notFound("Unknown Channel", 10003);
      if (this.webhooksDenied.has(id!)) return { status: 403, body: { message: "Missing Permissions", code: 50013 } };
      return ok(this.channelWebhooks(id!).map((w) => this.webhookPayload(w)));
    });
    on("POST", "/webhooks/:app/:token", (call, [id, token]) => {
      const hook = this.webhookFor(id!, token!);
      if (hook) {
        if ("status" in hook) return hook;
        const threadId = call.query.get("thread_id");
        if (threadId && this.threads.get(threadId) !== hook.channelId) return notFound("Unknown Channel", 10003);
        const limited = this.takeWebhookBucket(hook);
        if (limited) return limited;
        const invalid = this.rejectMessageBody(threadId ?? hook.channelId, call.body, call.files);
        if (invalid) return invalid;
        const stored = this.executeWebhook(hook, threadId ?? hook.channelId, call.body);
        return call.query.get("wait") === "true" ? ok(stored.payload) : noContent;
      }
      const interaction = this.interactions.get(token!);
      if (!interaction) return notFound("Unknown Webhook", 10015);
      const invalid = this.rejectMessageBody(interaction.payload.channel_id, call.body, call.files);
      if (invalid) return invalid;
      const stored = this.storeBotMessage(interaction.payload.channel_id, call.body, "interaction", call.files);
      return call.query.get("wait") === "true" ? ok(stored.payload) : noContent;
    });
  }

  /** The channel webhook an id and token name: undefined when the id is no webhook's (an interaction's), an error when it is gone or the token is wrong. */
  private webhookFor(id: string, token: string): FakeWebhook | RestAnswer | undefined {
    const hook = this.webhooks.get(id);
    if (hook) return hook.token === token ? hook : { status: 401, body: { message: "Invalid Webhook Token", code: 50027 } };
    // A snowflake that is no interaction's application: a webhook that was deleted.
    return id !== this.applicationId ? notFound("Unknown Webhook", 10015) : undefined;
  }

  private createWebhook(channelId: string, name: string, applicationId: string): FakeWebhook {
    const hook = { id: snowflake(), token: randomBytes(34).toString("base64url"), channelId, name, applicationId };
    this.webhooks.set(hook.id, hook);
    return hook;
  }

  /** Discord shows a webhook's token only to the application that owns it. */
  private webhookPayload(w: FakeWebhook) {
    return {
      id: w.id, type: 1, guild_id: this.guildId, channel_id: w.channelId, name: w.name, avatar: null, application_id: w.applicationId,
      ...(w.applicationId === this.applicationId ? { token: w.token, user: userPayload(this.botUser) } : {}),
    };
  }

  /** About 5 executions per 2 s per webhook; past that, a 429 with how long to wait. */
  private takeWebhookBucket(hook: FakeWebhook): RestAnswer | null {
    const at = Date.now();
    const uses = (this.webhookUses.get(hook.id) ?? []).filter((t) => t > at - WEBHOOK_BUCKET.windowMs);
    this.webhookUses.set(hook.id, uses);
    const resetAfter = uses.length ? (uses[0]! + WEBHOOK_BUCKET.windowMs - at) / 1000 : WEBHOOK_BUCKET.windowMs / 1000;
    const headers = {
      "x-ratelimit-limit": String(WEBHOOK_BUCKET.limit), "x-ratelimit-bucket": `webhook-${hook.id}`, "x-ratelimit-reset-after": resetAfter.toFixed(3),
      "x-ratelimit-remaining": String(Math.max(0, WEBHOOK_BUCKET.limit - uses.length - 1)),
    };
    if (uses.length >= WEBHOOK_BUCKET.limit) {
      return { status: 429, body: { message: "You are being rate limited.", retry_after: resetAfter, global: false }, headers: { ...headers, "x-ratelimit-remaining": "0", "retry-after": String(Math.ceil(resetAfter)), "x-ratelimit-scope": "shared" } };
    }
    uses.push(at);
    return null;
  }

  private executeWebhook(hook: FakeWebhook, channelId: string, body: MessageBody | null): StoredMessage {
    const author = { id: hook.id, username: String(body?.username ?? hook.name), discriminator: "0000", global_name: null, avatar: null, bot: true };
    const stored = this.storeBotMessage(channelId, body, "webhook");
    Object.assign(stored.payload, { author, webhook_id: hook.id, application_id: hook.applicationId });
    this.dispatch("MESSAGE_CREATE", this.asGatewayMessage(stored.payload));
    return stored;
  }

  /** A webhook edits only its own messages, and a thread's only when told the thread. */
  private editWebhookMessage(hook: FakeWebhook, mid: string, call: RestCall): RestAnswer {
    const m = this.messages.get(mid);
    if (!m || m.payload.webhook_id !== hook.id || m.payload.channel_id !== (call.query.get("thread_id") ?? hook.channelId)) return notFound("Unknown Message", 10008);
    return this.rejectEdit(m, call.body) ?? this.applyEdit(m, call.body, true);
  }

  /** The checks where real Discord answers 400 and a careless bot would not notice: empty, too long, bad reply. */
  private rejectMessageBody(channelId: string, body: MessageBody | null, files: RestCall["files"] | number): RestAnswer | null {
    const fileCount = typeof files === "number" ? files : files.length;
    const content = body?.content ?? "";
    const formError = (field: string, code: string, message: string): RestAnswer =>
      ({ status: 400, body: { message: "Invalid Form Body", code: 50035, errors: { [field]: { _errors: [{ code, message }] } } } });
    if (content.length > MAX_CONTENT_LENGTH) return formError("content", "BASE_TYPE_MAX_LENGTH", `Must be ${MAX_CONTENT_LENGTH} or fewer in length.`);
    if (!content && !body?.embeds?.length && !body?.components?.length && fileCount === 0) {
      return { status: 400, body: { message: "Cannot send an empty message", code: 50006 } };
    }
    const ref = body?.message_reference;
    if (ref?.message_id && ref.fail_if_not_exists !== false && this.messages.get(ref.message_id)?.payload.channel_id !== channelId) {
      return formError("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message");
    }
    return null;
  }

  // ─── Payload builders ───────────────────────────────────────────────────────

  private messageBase(id: string, channelId: string, author: FakeUser, content: string): MessagePayload {
    return {
      id, channel_id: channelId, author: userPayload(author), content, timestamp: now(), edited_timestamp: null,
      type: MessageType.Default, tts: false, mention_everyone: false, mentions: [], mention_roles: [],
      attachments: [], embeds: [], components: [], pinned: false, flags: 0,
    };
  }

  private storeBotMessage(channelId: string, body: MessageBody | null, origin: StoredMessage["origin"], files: RestCall["files"] = []): StoredMessage {
    const payload = this.messageBase(snowflake(), channelId, this.botUser, String(body?.content ?? ""));
    payload.embeds = body?.embeds ?? [];
    payload.components = body?.components ?? [];
    payload.flags = body?.flags ?? 0;
    payload.attachments = files.map((f) => ({ id: snowflake(), filename: f.filename, size: f.size,
      url: `https://cdn.discordapp.com/attachments/${channelId}/${f.filename}`, proxy_url: `https://media.discordapp.net/${f.filename}` }));
    const ref = body?.message_reference;
    const referenced = ref?.message_id ? this.messages.get(ref.message_id)?.payload : undefined;
    if (ref?.message_id) {
      payload.type = MessageType.Reply;
      payload.message_reference = { type: 0, message_id: ref.message_id, channel_id: channelId };
      if (referenced) payload.referenced_message = { ...referenced, referenced_message: undefined };
    }
    const stored: StoredMessage = { payload, origin, body, edits: [] };
    this.messages.set(payload.id, stored);
    return stored;
  }

  /** An edit is checked as the message it would leave behind. */
  private rejectEdit(message: StoredMessage, body: MessageBody | null): RestAnswer | null {
    const { content, embeds, components, attachments } = message.payload;
    const after = { content, embeds, components, ...body, message_reference: undefined };
    return this.rejectMessageBody(message.payload.channel_id, after, attachments.length);
  }

  private applyEdit(message: StoredMessage, body: MessageBody | null, echo: boolean): RestAnswer {
    message.edits.push(body);
    const p = message.payload;
    if (body?.content !== undefined) p.content = String(body.content ?? "");
    if (body?.embeds !== undefined) p.embeds = body.embeds ?? [];
    if (body?.components !== undefined) p.components = body.components ?? [];
    if (body?.flags !== undefined) p.flags = body.flags ?? 0;
    p.flags &= ~LOADING_FLAG; // editing a deferred reply replaces its "thinking…" state
    p.edited_timestamp = now();
    if (echo && this.echoBotMessages) this.dispatch("MESSAGE_UPDATE", this.asGatewayMessage(p));
    return ok(p);
  }

  /** Gateway messages carry channel_type, and in a guild guild_id and the author's member; REST responses do not. */
  private asGatewayMessage(p: MessagePayload): MessagePayload {
    if (p.webhook_id) return { ...p, guild_id: this.guildId, channel_type: this.threads.has(p.channel_id) ? ChannelType.PublicThread : ChannelType.GuildText };
    return this.isGuildChannel(p.channel_id)
      ? { ...p, guild_id: this.guildId, member: this.member(this.botUser), channel_type: this.threads.has(p.channel_id) ? ChannelType.PublicThread : ChannelType.GuildText }
      : { ...p, channel_type: ChannelType.DM };
  }

  /** GET /channels/:id/messages: newest first, honouring limit, before and after. */
  private history(channelId: string, query: URLSearchParams): MessagePayload[] {
    const before = query.get("before"), after = query.get("after");
    const limit = Math.min(Number(query.get("limit") ?? 50), 100);
    const inChannel = [...this.messages.values()].map((m) => m.payload).filter((p) => p.channel_id === channelId && !(p.flags & EPHEMERAL_FLAG)
      && (!before || BigInt(p.id) < BigInt(before)) && (!after || BigInt(p.id) > BigInt(after)));
    return inChannel.sort((a, b) => (BigInt(b.id) > BigInt(a.id) ? 1 : -1)).slice(0, limit);
  }

  private registerCommands(path: string, body: unknown, guildId?: string): unknown[] {
    const version = snowflake();
    const registered = (Array.isArray(body) ? body : []).map((command: { name: string }) => ({
      type: 1, description: "", options: [], default_member_permissions: null, ...command,
      id: this.commandId(command.name), application_id: this.applicationId, version, ...(guildId && { guild_id: guildId }),
    }));
    this.commands.set(path, registered);
    return registered;
  }

  /** Discord keeps a command's id stable across re-registrations under the same name. */
  private commandId(name: string): string {
    let id = this.commandIds.get(name);
    if (!id) this.commandIds.set(name, (id = snowflake()));
    return id;
  }

  private member(user: FakeUser): MemberPayload {
    return { nick: user.nick, roles: [], joined_at: "2015-01-01T00:00:00.000Z", deaf: false, mute: false, flags: 0 };
  }

  private isGuildChannel(id: string): boolean {
    return this.channelIds.includes(id) || this.threads.has(id);
  }

  private channelPayload(id: string) {
    const parent = this.threads.get(id);
    if (parent) {
      return {
        id, type: ChannelType.PublicThread, guild_id: this.guildId, parent_id: parent, name: this.channelNames.get(id) ?? "thread",
        owner_id: this.owner.id, last_message_id: null, rate_limit_per_user: 0, flags: 0, member_count: 1, message_count: 0,
        total_message_sent: 0, thread_metadata: { archived: false, auto_archive_duration: 1440, archive_timestamp: now(), locked: false, create_timestamp: now() },
      };
    }
    return {
      id, type: ChannelType.GuildText, guild_id: this.guildId, name: this.channelNames.get(id) ?? "unknown",
      position: this.channelIds.indexOf(id), permission_overwrites: [], topic: null, nsfw: false,
      last_message_id: null, rate_limit_per_user: 0, parent_id: null, flags: 0,
    };
  }

  private guildPayload() {
    const everyone = { id: this.guildId, name: "@everyone", permissions: EVERYONE_PERMISSIONS, position: 0, color: 0,
      hoist: false, managed: false, mentionable: false, flags: 0, icon: null, unicode_emoji: null };
    const members = [...this.users.values()].map((u) => ({ ...this.member(u), user: userPayload(u) }));
    return {
      id: this.guildId, name: "Central Perk", icon: null, splash: null, discovery_splash: null, banner: null, description: null,
      owner_id: this.owner.id, afk_channel_id: null, afk_timeout: 300, verification_level: 0, default_message_notifications: 1,
      explicit_content_filter: 0, mfa_level: 0, premium_tier: 0, premium_subscription_count: 0, nsfw_level: 0,
      preferred_locale: "en-US", system_channel_id: null, system_channel_flags: 0, rules_channel_id: null,
      public_updates_channel_id: null, safety_alerts_channel_id: null, application_id: null, vanity_url_code: null,
      max_members: 500_000, max_video_channel_users: 25, premium_progress_bar_enabled: false, features: [],
      joined_at: "2015-01-01T00:00:00.000Z", large: false, unavailable: false, lazy: true, member_count: members.length,
      roles: [everyone], channels: this.channelIds.map((id) => this.channelPayload(id)), members,
      emojis: [], stickers: [], voice_states: [], presences: [], threads: [...this.threads.keys()].map((id) => this.channelPayload(id)), stage_instances: [],
      guild_scheduled_events: [], soundboard_sounds: [],
    };
  }
}

function userPayload(user: FakeUser): UserPayload {
  return { id: user.id, username: user.username, discriminator: "0", global_name: user.global_name, avatar: null, ...(user.bot && { bot: true as const }) };
}

/** JSON bodies parse directly; multipart ones (discord.js sends those with files) carry JSON in payload_json. */
async function readBody(req: IncomingMessage): Promise<Pick<RestCall, "body" | "files">> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  const type = req.headers["content-type"] ?? "";
  if (raw.length === 0) return { body: null, files: [] };
  if (type.startsWith("application/json")) return { body: JSON.parse(raw.toString("utf8")), files: [] };
  if (!type.startsWith("multipart/form-data")) return { body: null, files: [] };
  const form = await new Response(raw, { headers: { "content-type": type } }).formData();
  const files: RestCall["files"] = [];
  let body: unknown = null;
  for (const [field, value] of form.entries()) {
    if (typeof value === "string") {
      if (field === "payload_json") body = JSON.parse(value);
    } else files.push({ field, filename: value.name, size: value.size });
  }
  return { body, files };
}
