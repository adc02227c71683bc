/**
 * The client's command-line flags, its --help text (generated from the same table) and its exit codes.
 *
 * @module
 */

import { DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS } from "../crypto.ts";
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "../flags.ts";
import { NameError, validateNick, validateRoom } from "../names.ts";
import type { CloseKind } from "./session.ts";

export { UsageError };

/** Raised for a --nick that breaks the nick rules: exit code 5, like a nick the server refuses. */
export class NickFlagError extends UsageError {
  /** @param message what is wrong with the nick */
  constructor(message: string) {
    super(message);
    this.name = "NickFlagError";
  }
}

/** Exit codes of the client, as documented in --help and README.md. */
export const CLIENT_EXIT = {
  /** Finished normally (EOF in script mode with every message acknowledged, /quit, Ctrl-C). */
  ok: 0,
  /** A bug: an unexpected error. */
  internal: 1,
  /**
   * A bad flag, a missing nick or passphrase where none can be asked for, --json on a terminal; in script mode also
   * a stdin line that was not stored (too long, or refused by the server; each is named on stderr).
   */
  usage: 2,
  /** The server could not be reached at start, or is not one to use (TLS problem, invalid welcome). */
  connect: 3,
  /** The passphrase is wrong (at start, or the room changed while reconnecting), or the room was not created. */
  denied: 4,
  /** The nick is taken or breaks the nick rules. */
  nick: 5,
  /** Script mode: the connection was lost and did not come back within --reconnect-for. */
  closed: 6,
} as const;

/** The exit code for each way a session can end. */
export const EXIT_OF_CLOSE: Record<CloseKind, number> = {
  connect: CLIENT_EXIT.connect,
  denied: CLIENT_EXIT.denied,
  nick: CLIENT_EXIT.nick,
  closed: CLIENT_EXIT.closed,
  quit: CLIENT_EXIT.ok,
};

/** Everything the client needs to start. */
export interface ClientConfig {
  /** Server host name or address. */
  host: string;
  /** Server port. */
  port: number;
  /** Nick; asked for when missing on a terminal. */
  nick?: string;
  /** Room to join. */
  room: string;
  /** Connect with TLS. */
  tls: boolean;
  /** PEM file of a certificate authority (or self-signed certificate) to trust; implies TLS. */
  ca?: string;
  /** PBKDF2 count used when this client creates the room. */
  iterations: number;
  /** File whose first line is the passphrase. */
  passphraseFile?: string;
  /** Script mode prints JSON lines. */
  json: boolean;
  /** Seconds to keep reconnecting after the connection is lost. */
  reconnectFor: number;
  /** Do not ring the terminal's bell when someone mentions the user. */
  noBell: boolean;
  /** Print help and exit. */
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
}

/** The flag table: parsing, defaults and --help all come from it. */
export const CLIENT_FLAGS: FlagSpec<keyof ClientConfig>[] = [
  { name: "host", key: "host", kind: "string", default: "127.0.0.1", arg: "HOST", help: "server to connect to" },
  { name: "port", key: "port", kind: "int", default: 5000, min: 1, max: 65535, arg: "PORT", help: "server port" },
  { name: "nick", key: "nick", kind: "string", arg: "NICK", help: "your nick (asked for on a terminal if missing)" },
  { name: "room", key: "room", kind: "string", default: "general", arg: "ROOM", help: "room to join" },
  { name: "tls", key: "tls", kind: "boolean", default: false, help: "connect with TLS" },
  {
    name: "ca",
    key: "ca",
    kind: "string",
    arg: "FILE",
    help: "PEM certificate to trust (self-signed server); implies --tls",
  },
  {
    name: "iterations",
    key: "iterations",
    kind: "int",
    default: DEFAULT_ITERATIONS,
    min: MIN_ITERATIONS,
    max: MAX_ITERATIONS,
    arg: "N",
    help: "PBKDF2 iterations, used only when creating a room",
  },
  {
    name: "passphrase-file",
    key: "passphraseFile",
    kind: "string",
    arg: "FILE",
    help: "read the room passphrase from the first line of FILE",
  },
  {
    name: "json",
    key: "json",
    kind: "boolean",
    default: false,
    help: "script mode: print one JSON object per message",
  },
  {
    name: "reconnect-for",
    key: "reconnectFor",
    kind: "number",
    default: 60,
    min: 0,
    max: 86400,
    arg: "SECONDS",
    help: "script mode: seconds to keep reconnecting after the connection is lost (interactive: no limit)",
  },
  {
    name: "no-bell",
    key: "noBell",
    kind: "boolean",
    default: false,
    help: "do not ring the terminal bell when a message names you",
  },
  { name: "help", key: "help", short: "h", kind: "boolean", default: false, help: "show this help and exit" },
  { name: "version", key: "version", kind: "boolean", default: false, help: "show the version and exit" },
];

/** What each exit code means, in the words of --help and README.md (a test checks both). */
export const EXIT_MEANINGS: Record<(typeof CLIENT_EXIT)[keyof typeof CLIENT_EXIT], string> = {
  0: "ok",
  1: "internal error",
  2: "bad flag, missing nick or passphrase in script mode, --json on a terminal, or (script mode) a line not stored",
  3: "cannot connect at start (unreachable, TLS problem, not a usable server)",
  4: "access denied (wrong passphrase)",
  5: "nick in use or invalid",
  6: "script mode: the connection was lost and did not come back within --reconnect-for",
};

/**
 * The --help text, generated from {@link CLIENT_FLAGS}.
 *
 * @example
 * ```ts
 * console.log(clientHelp("0.1.0"));
 * ```
 * @param version the program version
 * @returns the help text
 */
export function clientHelp(version: string): string {
  return [
    `aeschat client ${version}: end-to-end encrypted group chat in the terminal.`,
    "",
    "Usage: aeschat-client [options]     (from source: deno task client [options])",
    "",
    "On a terminal it is an interactive chat (type /help inside) that keeps reconnecting for as long as it runs.",
    "With stdin not a terminal it is a script: every stdin line is sent to --room, received messages are printed",
    "as `HH:MM:SS <nick> text` (or JSON with --json), status goes to stderr, and at EOF it exits once every line",
    "sent is stored; a line that was not stored is named on stderr.",
    "",
    "The passphrase comes from --passphrase-file, else AESCHAT_PASSPHRASE, else a prompt that does not echo;",
    "never from the command line.",
    "",
    "Options:",
    ...flagHelp(CLIENT_FLAGS),
    "",
    "Exit codes:",
    ...Object.entries(EXIT_MEANINGS).map(([code, meaning]) => `  ${code}  ${meaning}`),
  ].join("\n");
}

/**
 * Parses the client's flags.
 *
 * @example
 * ```ts
 * parseClientFlags(["--nick", "alice", "--port", "5000"]).room; // "general"
 * ```
 * @param args the command-line arguments
 * @returns the configuration, defaults filled in
 * @throws {UsageError} for an unknown flag, a bad value, or a room that breaks the room rules
 * @throws {NickFlagError} for a nick that breaks the nick rules
 */
export function parseClientFlags(args: string[]): ClientConfig {
  const config = parseFlags(CLIENT_FLAGS, args) as unknown as ClientConfig;
  try {
    if (config.nick !== undefined) validateNick(config.nick);
  } catch (err) {
    if (err instanceof NameError) throw new NickFlagError(`--nick: ${err.message}`);
    throw err;
  }
  try {
    validateRoom(config.room);
  } catch (err) {
    if (err instanceof NameError) throw new UsageError(`--room: ${err.message}`);
    throw err;
  }
  if (config.ca !== undefined) config.tls = true;
  return config;
}
