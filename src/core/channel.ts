/** Channel ids of terminal conversations: `cli:NAME`, kept in the same database as Discord's. */
export const TERMINAL_CHANNEL_PREFIX = "cli:";
