/**
 * The client's command-line flags, its --help text (generated from the same table) and its exit codes.
 *
 * @module
 */

import { DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS } from "../crypto.ts";
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "../flags.ts";
import { foldName, NameError, validateNick, validateRoom } from "../names.ts";
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
   * A bad flag or subcommand, a missing nick or passphrase where none can be asked for, --json on a terminal, a home
   * that cannot be used; in script mode also a stdin line that was not stored (each is named on stderr).
   */
  usage: 2,
  /** The server could not be reached at start, or is not one to use (TLS problem, invalid answers). */
  connect: 3,
  /** The passphrase is wrong (at start, or the room changed while reconnecting), or the room was not created. */
  denied: 4,
  /** The nick is registered to another key, taken, or breaks the nick rules. */
  nick: 5,
  /** Script mode: the connection was lost and did not come back within --reconnect-for. */
  closed: 6,
  /** Refused because a pinned key or room parameter changed: the server key, a room's parameters, a DM recipient's key. */
  changed: 7,
} as const;

/** The exit code for each way a session can end. */
export const EXIT_OF_CLOSE: Record<CloseKind, number> = {
  connect: CLIENT_EXIT.connect,
  denied: CLIENT_EXIT.denied,
  nick: CLIENT_EXIT.nick,
  closed: CLIENT_EXIT.closed,
  changed: CLIENT_EXIT.changed,
  quit: CLIENT_EXIT.ok,
};

/** What the command line asks for besides chatting: the subcommands. */
export type Subcommand =
  /** Chat (no subcommand): interactive on a terminal, script mode otherwise. */
  | { name: "chat" }
  /** Print the identity's fingerprint and the home's path. */
  | { name: "identity" }
  /** Copy the identity (the key, not this device's pins) to FILE. */
  | { name: "identity export"; file: string }
  /** Take the identity in FILE into an empty home. */
  | { name: "identity import"; file: string }
  /** Replace the identity key by a new one, with a statement signed by the old one. */
  | { name: "identity rotate" }
  /** Set, change or remove the identity's passphrase. */
  | { name: "identity passphrase" }
  /** Accept the key a server now shows (the fingerprint the refusal printed). */
  | { name: "trust-server"; address: string; fingerprint?: string }
  /** Accept a peer's new key on the server of --host/--port. */
  | { name: "trust"; nick: string; fingerprint?: string }
  /** Forget a room's pinned parameters (and a kept secret) on the server of --host/--port. */
  | { name: "forget-room"; room: string }
  /** Accept an invitation to ROOM received over the direct channel, keep its secret, and join once to check it. */
  | { name: "accept"; room: string };

/** Everything the client needs to start. */
export interface ClientConfig {
  /** What to do. */
  command: Subcommand;
  /** Server host name or address. */
  host: string;
  /** Server port. */
  port: number;
  /** Nick; asked for when missing on a terminal. */
  nick?: string;
  /** Rooms to join, in order (a leading # dropped): script mode sends stdin lines to the first. */
  rooms: string[];
  /** The first room of {@link rooms}. */
  room: string;
  /** Script mode: send every stdin line as a direct message to this nick instead of to the first room. */
  to?: string;
  /** Connect with TLS. */
  tls: boolean;
  /** PEM file of a certificate authority (or self-signed certificate) to trust; implies TLS. */
  ca?: string;
  /** PBKDF2 count used when this client creates a room. */
  iterations: number;
  /** The lowest PBKDF2 count accepted for a room joined for the first time. */
  minIterations: number;
  /** Keep the secret of the rooms joined by passphrase in the home, so they are rejoined without it. */
  remember: boolean;
  /** File whose first line is the passphrase. */
  passphraseFile?: string;
  /** Script mode prints JSON lines. */
  json: boolean;
  /** Script mode prints only messages that arrive after joining. */
  noHistory: boolean;
  /** Seconds to keep reconnecting after the connection is lost. */
  reconnectFor: number;
  /** Do not ring the terminal's bell when someone mentions the user. */
  noBell: boolean;
  /** Print help and exit. */
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
}

type FlagKey = Exclude<keyof ClientConfig, "command" | "room">;

/** The flag table: parsing, defaults and --help all come from it. */
export const CLIENT_FLAGS: FlagSpec<FlagKey>[] = [
  { name: "host", key: "host", kind: "string", default: "127.0.0.1", arg: "HOST", help: "server to connect to" },
  { name: "port", key: "port", kind: "int", default: 5000, min: 1, max: 65535, arg: "PORT", help: "server port" },
  { name: "nick", key: "nick", kind: "string", arg: "NICK", help: "your nick (asked for on a terminal if missing)" },
  {
    name: "room",
    key: "rooms",
    kind: "string",
    default: "general",
    arg: "ROOM",
    multiple: true,
    help: "room to join; script mode sends stdin to the first",
  },
  {
    name: "to",
    key: "to",
    kind: "string",
    arg: "NICK",
    help: "script mode: send each stdin line as a direct message to NICK",
  },
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
    name: "min-iterations",
    key: "minIterations",
    kind: "int",
    default: DEFAULT_ITERATIONS,
    min: MIN_ITERATIONS,
    max: MAX_ITERATIONS,
    arg: "N",
    help: "refuse to join a room seen for the first time whose PBKDF2 count is lower",
  },
  {
    name: "remember",
    key: "remember",
    kind: "boolean",
    default: false,
    help: "keep the secret of rooms joined by passphrase in your home, to rejoin without it",
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
    name: "no-history",
    key: "noHistory",
    kind: "boolean",
    default: false,
    help: "script mode: print only messages that arrive after joining",
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
  2: "bad flag or subcommand, missing nick or passphrase in script mode, --json on a terminal, an unusable home, " +
    "or (script mode) a line not stored",
  3: "cannot connect at start (unreachable, TLS problem, not a usable server)",
  4: "access denied (wrong passphrase, or no invitation to accept)",
  5: "nick registered to another key, in use, or invalid",
  6: "script mode: the connection was lost and did not come back within --reconnect-for",
  7: "refused: a pinned key or room parameter changed (server key, room parameters, a direct recipient's key), " +
    "or a room seen for the first time is weaker than --min-iterations",
};

/** The subcommands, as --help lists them. */
export const SUBCOMMAND_HELP: [usage: string, help: string][] = [
  ["identity", "print your identity's fingerprint and the home's path"],
  ["identity export FILE", "copy your identity key to FILE (for a second device)"],
  ["identity import FILE", "use the identity in FILE (in a home that has none)"],
  ["identity rotate", "replace your identity key; the old key signs the change"],
  ["identity passphrase", "set, change or remove the passphrase of your identity key"],
  ["trust-server HOST:PORT FINGERPRINT", "accept the new key a server shows (the fingerprint it was refused with)"],
  ["trust NICK [FINGERPRINT]", "accept NICK's new key on the server of --host/--port"],
  ["forget-room ROOM", "forget ROOM's pinned parameters on the server of --host/--port (re-pinned on next join)"],
  ["accept ROOM", "accept an invitation to ROOM, keep its secret, and join it once"],
];

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
    "Usage: aeschat-client [options]                (from source: deno task -q client [options])",
    "       aeschat-client SUBCOMMAND [ARGS] [options]",
    "",
    "On a terminal it is an interactive chat (type /help inside) that keeps reconnecting for as long as it runs.",
    "With stdin not a terminal it is a script: every stdin line is sent to the first --room (or to --to NICK),",
    "received messages are printed as `HH:MM:SS <nick> text` (or JSON with --json), status goes to stderr, and at",
    "EOF it exits once every line sent is stored; a line that was not stored is named on stderr.",
    "",
    "The room passphrase comes from --passphrase-file, else AESCHAT_PASSPHRASE, else a prompt that does not echo;",
    "never from the command line. Your identity key and pins live in $AESCHAT_HOME (default",
    "$XDG_CONFIG_HOME/aeschat or ~/.config/aeschat; %APPDATA%\\aeschat on Windows), made on first run.",
    "",
    "Subcommands:",
    ...SUBCOMMAND_HELP.map(([usage, help]) => `  ${usage.padEnd(36)} ${help}`),
    "",
    "Options:",
    ...flagHelp(CLIENT_FLAGS),
    "",
    "Exit codes:",
    ...Object.entries(EXIT_MEANINGS).map(([code, meaning]) => `  ${code}  ${meaning}`),
  ].join("\n");
}

/**
 * A room name as the user typed it: a leading `#` is dropped (`#ops` is `ops`), then the room rules apply.
 *
 * @example
 * ```ts
 * roomArgument("#ops"); // "ops"
 * ```
 * @param text what was typed
 * @returns the room name
 * @throws {NameError} when the rest breaks the room rules
 */
export function roomArgument(text: string): string {
  return validateRoom(text.startsWith("#") ? text.slice(1) : text);
}

/** Separates the subcommand's words from the flags (and their values), wherever they are on the line. */
function splitWords(args: string[]): { words: string[]; flags: string[] } {
  const valued = new Set(CLIENT_FLAGS.filter((f) => f.kind !== "boolean").map((f) => `--${f.name}`));
  const words: string[] = [];
  const flags: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      words.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      words.push(arg);
      continue;
    }
    flags.push(arg);
    // The value of a flag written `--flag VALUE` is not a word, whatever it looks like.
    if (valued.has(arg) && i + 1 < args.length) flags.push(args[++i]);
  }
  return { words, flags };
}

function parseSubcommand(words: string[]): Subcommand {
  const [first, second, third, fourth] = words;
  const count = (n: number, usage: string) => {
    if (words.length !== n) throw new UsageError(`usage: ${usage}`);
  };
  switch (first) {
    case undefined:
      return { name: "chat" };
    case "identity":
      if (second === undefined) return { name: "identity" };
      if (second === "export" || second === "import") {
        count(3, `identity ${second} FILE`);
        return { name: `identity ${second}`, file: third };
      }
      if (second === "rotate" || second === "passphrase") {
        count(2, `identity ${second}`);
        return { name: `identity ${second}` };
      }
      throw new UsageError(`unknown identity subcommand ${JSON.stringify(second)}: export, import, rotate, passphrase`);
    case "trust-server": {
      if (words.length < 2 || words.length > 3) throw new UsageError("usage: trust-server HOST:PORT FINGERPRINT");
      if (!/^.+:\d{1,5}$/.test(second)) throw new UsageError(`trust-server: ${second} is not HOST:PORT`);
      return { name: "trust-server", address: second, fingerprint: fingerprintArgument(third) };
    }
    case "trust":
      if (words.length < 2 || words.length > 3) throw new UsageError("usage: trust NICK [FINGERPRINT]");
      return { name: "trust", nick: checkedNick(second), fingerprint: fingerprintArgument(third) };
    case "forget-room":
    case "accept":
      count(2, `${first} ROOM`);
      return { name: first, room: checkedRoom(second, first) };
    default:
      throw new UsageError(
        `unknown subcommand ${JSON.stringify(first)}: ${
          [...new Set(SUBCOMMAND_HELP.map(([u]) => u.split(" ")[0]))]
            .join(", ")
        }`,
      );
  }
  // Unreachable: every case returns.
  void fourth;
}

/** A fingerprint as typed: 40 hex digits, spaces between groups allowed. */
function fingerprintArgument(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const hex = text.replace(/\s+/g, "").toLowerCase();
  if (!/^[0-9a-f]{40}$/.test(hex)) throw new UsageError(`${text} is not a fingerprint (40 hexadecimal digits)`);
  return hex;
}

function checkedNick(nick: string): string {
  try {
    return validateNick(nick);
  } catch (err) {
    if (err instanceof NameError) throw new UsageError(`${nick}: ${err.message}`);
    throw err;
  }
}

function checkedRoom(room: string, flag: string): string {
  try {
    return roomArgument(room);
  } catch (err) {
    if (err instanceof NameError) throw new UsageError(`${flag}: ${err.message}`);
    throw err;
  }
}

/**
 * Parses the client's command line: an optional subcommand and its arguments (the words that are not flags or flag
 * values, wherever they are), and flags.
 *
 * @example
 * ```ts
 * parseClientFlags(["--nick", "alice", "--port", "5000"]).room; // "general"
 * parseClientFlags(["identity", "export", "id.json"]).command; // { name: "identity export", file: "id.json" }
 * ```
 * @param args the command-line arguments
 * @returns the configuration, defaults filled in
 * @throws {UsageError} for an unknown flag or subcommand, a bad value, or a room that breaks the room rules
 * @throws {NickFlagError} for a nick that breaks the nick rules
 */
export function parseClientFlags(args: string[]): ClientConfig {
  const { words, flags } = splitWords(args);
  const config = parseFlags(CLIENT_FLAGS, flags) as unknown as ClientConfig;
  config.command = parseSubcommand(words);
  try {
    if (config.nick !== undefined) validateNick(config.nick);
  } catch (err) {
    if (err instanceof NameError) throw new NickFlagError(`--nick: ${err.message}`);
    throw err;
  }
  config.rooms = config.rooms.map((room) => checkedRoom(room, "--room"));
  const folded = config.rooms.map(foldName);
  if (new Set(folded).size !== folded.length) throw new UsageError("--room: a room is named twice");
  config.room = config.rooms[0];
  if (config.to !== undefined) config.to = checkedNick(config.to);
  if (config.ca !== undefined) config.tls = true;
  return config;
}
