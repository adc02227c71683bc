/**
 * The server's command-line flags: their defaults, the --help text generated from the same table, and parsing
 * into a checked configuration.
 *
 * @module
 */

import { DEFAULT_MAX_FRAME } from "../frame.ts";
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "../flags.ts";
import { AddressListError, ExemptAddresses } from "./addresses.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";
import type { Retention } from "./store.ts";

export { UsageError };

/** Everything the server needs to start. */
export interface ServerConfig {
  /** Interface to listen on. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** SQLite database file. */
  db: string;
  /** Messages replayed on join. */
  history: number;
  /** Largest frame body accepted, in bytes. */
  maxFrame: number;
  /** Most simultaneous connections. */
  maxConnections: number;
  /** Most simultaneous connections from one address, an IPv6 /64 counting as one (exempt addresses excepted). */
  maxConnectionsPerAddress: number;
  /** Addresses exempt from per-address limits: IPs, "loopback", or "none". */
  exemptAddresses: string;
  /** Messages per second per connection (0 = unlimited). */
  rate: number;
  /** Burst above the rate. */
  burst: number;
  /** Bytes queued for one reader above which it is behind (half of it: congested). */
  sendQueue: number;
  /** Seconds a reader may stay behind before it is cut off. */
  sendGrace: number;
  /** Most bytes queued for all readers together (a quarter of it, for readers not slow, holds senders back). */
  maxQueued: number;
  /** Bytes a second a reader that is behind must take to hold the senders back (slower, it is slow). */
  minReadRate: number;
  /** Most rooms the database may hold. */
  maxRooms: number;
  /** Most rooms one connection may be in at once. */
  maxRoomsPerConnection: number;
  /** Rooms per hour one connection, or one address, may create after its burst (0: no limit). */
  roomCreateRate: number;
  /** Rooms one connection, or one address, may create at once. */
  roomCreateBurst: number;
  /** Most bytes of envelopes one room may store. */
  roomQuota: number;
  /** What to keep: "all", a number of messages per room, or an age such as "30d" or "12h". */
  retention: string;
  /** Nicks one identity key may hold. */
  maxNicksPerKey: number;
  /** New nick registrations one address may make in an hour (0: no limit). */
  registrationsPerHour: number;
  /** Days after which an unused registration may be taken by another key (0: never). */
  nickExpiry: number;
  /** "open": anyone may register a free nick; "closed": only registered or reserved nicks may be used. */
  registration: "open" | "closed";
  /** Direct messages one identity's inbox may hold (received ones and copies of sent ones). */
  directInbox: number;
  /** Seconds allowed from connecting to a successful login. */
  handshakeTimeout: number;
  /** Seconds without a complete frame before disconnecting. */
  idleTimeout: number;
  /** SQLite synchronous mode. */
  synchronous: "full" | "normal";
  /** PEM certificate file, for TLS. */
  tlsCert?: string;
  /** PEM PKCS#8 key file, for TLS. */
  tlsKey?: string;
  /** Least severe level logged. */
  logLevel: LogLevel;
  /** Log line format. */
  logFormat: LogFormat;
  /** Print help and exit. */
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
}

/** The flag table: parsing, defaults and --help all come from it. */
export const SERVER_FLAGS: FlagSpec<keyof ServerConfig>[] = [
  { name: "host", key: "host", kind: "string", default: "127.0.0.1", help: "interface to listen on" },
  { name: "port", key: "port", kind: "int", default: 5000, min: 0, max: 65535, help: "TCP port (0 = any free port)" },
  { name: "db", key: "db", kind: "string", default: "./aeschat.db", help: "SQLite database file (created if missing)" },
  { name: "history", key: "history", kind: "int", default: 50, min: 0, max: 500, help: "messages replayed on join" },
  {
    name: "max-frame",
    key: "maxFrame",
    kind: "int",
    default: DEFAULT_MAX_FRAME,
    min: 1024,
    max: 16 * 1024 * 1024,
    help: "largest frame a client may send, in bytes",
  },
  {
    name: "max-connections",
    key: "maxConnections",
    kind: "int",
    default: 1000,
    min: 1,
    max: 1_000_000,
    help: "most simultaneous connections (at most half of them before joining a room)",
  },
  {
    name: "max-connections-per-address",
    key: "maxConnectionsPerAddress",
    kind: "int",
    default: 100,
    min: 1,
    max: 1_000_000,
    help: "most simultaneous connections from one address (an IPv4 address or an IPv6 /64)",
  },
  {
    name: "exempt-addresses",
    key: "exemptAddresses",
    kind: "string",
    default: "loopback",
    arg: "LIST",
    help: "addresses exempt from per-address limits: single IPs (no networks), loopback, or none",
  },
  {
    name: "rate",
    key: "rate",
    kind: "number",
    default: 20,
    min: 0,
    max: 1_000_000,
    help: "messages per second per connection, on average (0 = unlimited)",
  },
  {
    name: "burst",
    key: "burst",
    kind: "int",
    default: 40,
    min: 1,
    max: 1_000_000,
    help: "messages allowed at once above --rate",
  },
  {
    name: "send-queue",
    key: "sendQueue",
    kind: "int",
    default: 1024 * 1024,
    min: 64 * 1024,
    max: 1024 * 1024 * 1024,
    help: "bytes waiting for one reader above which it is behind (above half, senders wait for it briefly)",
  },
  {
    name: "send-grace",
    key: "sendGrace",
    kind: "number",
    default: 30,
    min: 0.1,
    max: 3600,
    help: "seconds a reader may stay behind before it is cut off",
  },
  {
    name: "max-queued",
    key: "maxQueued",
    kind: "int",
    default: 128 * 1024 * 1024,
    min: 256 * 1024,
    max: 16 * 1024 * 1024 * 1024,
    help:
      "most bytes waiting for all readers together: senders wait from a quarter of it, slow readers are cut above it",
  },
  {
    name: "min-read-rate",
    key: "minReadRate",
    kind: "int",
    default: 64 * 1024,
    min: 1,
    max: 1024 * 1024 * 1024,
    help: "bytes a second a reader with a backlog must take for senders to wait for it; slower, it is slow",
  },
  {
    name: "max-rooms",
    key: "maxRooms",
    kind: "int",
    default: 1000,
    min: 1,
    max: 10_000_000,
    help: "most rooms the database may hold; creating more is refused (room_limit)",
  },
  {
    name: "max-rooms-per-connection",
    key: "maxRoomsPerConnection",
    kind: "int",
    default: 20,
    min: 1,
    max: 10_000,
    help: "most rooms one connection may be in at once (too_many_rooms)",
  },
  {
    name: "room-create-rate",
    key: "roomCreateRate",
    kind: "number",
    default: 30,
    min: 0,
    max: 1_000_000,
    help: "rooms an hour one connection, or one address (IPv4, or IPv6 /64), may create after its burst (0 = no limit)",
  },
  {
    name: "room-create-burst",
    key: "roomCreateBurst",
    kind: "int",
    default: 5,
    min: 1,
    max: 1_000_000,
    help: "rooms one connection, or one address (IPv4, or IPv6 /64), may create at once",
  },
  {
    name: "room-quota",
    key: "roomQuota",
    kind: "int",
    default: 256 * 1024 * 1024,
    min: 64 * 1024,
    max: Number.MAX_SAFE_INTEGER,
    help: "most bytes of messages one room may store; more are refused (room_full)",
  },
  {
    name: "retention",
    key: "retention",
    kind: "string",
    default: "all",
    arg: "KEEP",
    help: "messages kept: all, N (the last N of each room and inbox), or an age such as 30d or 12h",
  },
  {
    name: "max-nicks-per-key",
    key: "maxNicksPerKey",
    kind: "int",
    default: 5,
    min: 1,
    max: 1000,
    help: "nicks one identity key may hold; registering more is refused (too_many_nicks)",
  },
  {
    name: "registrations-per-hour",
    key: "registrationsPerHour",
    kind: "int",
    default: 10,
    min: 0,
    max: 1_000_000,
    help: "new nicks one address (IPv4, or IPv6 /64) may register in an hour, exempt addresses excepted (0 = no limit)",
  },
  {
    name: "nick-expiry",
    key: "nickExpiry",
    kind: "number",
    default: 365,
    min: 0,
    max: 36_500,
    arg: "DAYS",
    help: "days after which a nick nobody used may be registered by another key (0 = never)",
  },
  {
    name: "registration",
    key: "registration",
    kind: "choice",
    default: "open",
    choices: ["open", "closed"],
    help: "open: a free nick goes to the first key that uses it; closed: only registered or reserved nicks",
  },
  {
    name: "direct-inbox",
    key: "directInbox",
    kind: "int",
    default: 10_000,
    min: 1,
    max: 100_000_000,
    help: "direct messages one identity's inbox keeps (the oldest delivered ones and own copies roll out), and may " +
      "have waiting undelivered (then inbox_full; one sender may have a tenth of it waiting)",
  },
  {
    name: "handshake-timeout",
    key: "handshakeTimeout",
    kind: "number",
    default: 10,
    min: 0.05,
    max: 3600,
    help: "seconds a new connection has to log in (hello, then login)",
  },
  {
    name: "idle-timeout",
    key: "idleTimeout",
    kind: "number",
    default: 120,
    min: 0.05,
    max: 86400,
    help: "seconds without a complete frame before disconnecting (clients ping)",
  },
  {
    name: "synchronous",
    key: "synchronous",
    kind: "choice",
    default: "full",
    choices: ["full", "normal"],
    help: "SQLite durability: full survives power loss, normal only a crash",
  },
  { name: "tls-cert", key: "tlsCert", kind: "string", help: "PEM certificate file (with --tls-key: serve TLS)" },
  { name: "tls-key", key: "tlsKey", kind: "string", help: "PEM PKCS#8 private key file" },
  {
    name: "log-level",
    key: "logLevel",
    kind: "choice",
    default: "info",
    choices: LOG_LEVELS,
    help: "least severe events logged",
  },
  {
    name: "log-format",
    key: "logFormat",
    kind: "choice",
    default: "text",
    choices: ["text", "json"],
    help: "log lines as text or JSON",
  },
  { name: "help", key: "help", kind: "boolean", default: false, help: "show this help and exit" },
  { name: "version", key: "version", kind: "boolean", default: false, help: "show the version and exit" },
];

/**
 * The --help text, generated from {@link SERVER_FLAGS}.
 *
 * @example
 * ```ts
 * console.log(serverHelp("0.1.0"));
 * ```
 * @param version the program version
 * @returns the help text
 */
export function serverHelp(version: string): string {
  const lines = [
    `aeschat server ${version}: relays and stores end-to-end encrypted messages it cannot read.`,
    "",
    "Usage: aeschat-server [options]     (from source: deno task server [options])",
    "       aeschat-server admin COMMAND [--db FILE]   (rooms, nicks, server-key, ...: on a stopped server's database;",
    "                                                  admin --help lists them)",
    "",
    "Options:",
  ];
  lines.push(...flagHelp(SERVER_FLAGS));
  lines.push(
    "",
    "Exit codes: 0 ok, 1 internal error, 2 bad flag, 3 cannot listen, 4 cannot open the database (or another",
    "            server holds it), 5 database corrupt or from a newer version, 6 bad TLS certificate or key.",
  );
  return lines.join("\n");
}

/**
 * Reads a --retention value.
 *
 * @example
 * ```ts
 * parseRetention("30d"); // { kind: "age", ageMs: 2592000000 }
 * parseRetention("5000"); // { kind: "count", count: 5000 }
 * ```
 * @param text "all", a whole number of messages per room, or a whole number of days (d) or hours (h)
 * @returns the retention
 * @throws {UsageError} for anything else
 */
export function parseRetention(text: string): Retention {
  if (text === "all") return { kind: "all" };
  const match = /^([1-9]\d{0,9})([dh]?)$/.exec(text);
  if (!match) {
    throw new UsageError(`--retention must be all, a number of messages, or an age such as 30d or 12h, got ${text}`);
  }
  const n = Number(match[1]);
  if (match[2] === "") return { kind: "count", count: n };
  return { kind: "age", ageMs: n * (match[2] === "d" ? 86_400_000 : 3_600_000) };
}

/**
 * Parses the server's flags.
 *
 * @example
 * ```ts
 * parseServerFlags(["--port", "0"]).port; // 0
 * ```
 * @param args the command-line arguments
 * @returns the configuration, defaults filled in
 * @throws {UsageError} for an unknown flag or a bad value
 */
export function parseServerFlags(args: string[]): ServerConfig {
  const config = parseFlags(SERVER_FLAGS, args);
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  parseRetention(config.retention as string);
  try {
    new ExemptAddresses(config.exemptAddresses as string);
  } catch (err) {
    if (err instanceof AddressListError) throw new UsageError(err.message);
    throw err;
  }
  return config as unknown as ServerConfig;
}
