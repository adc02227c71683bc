/**
 * The interactive slash commands: one table that both dispatches and generates /help.
 *
 * @module
 */

import { formatFingerprint } from "../identity.ts";
import { validateNick, validateRoom } from "../names.ts";
import { HISTORY_PAGE } from "../protocol.ts";
import type { ChatSession } from "./chat_session.ts";
import type { CompletionKind } from "./completion.ts";
import { displayNick, shownNick } from "./render.ts";
import { JoinError, SendError } from "./session.ts";

/** What a command can do to the user interface and the session. */
export interface CommandContext {
  /** The chat session. */
  session: ChatSession;
  /** The room of the current conversation (undefined in a direct conversation, or before the first join). */
  room: string | undefined;
  /** Prints a status line. */
  status(text: string): void;
  /** Prints a warning line. */
  warn(text: string): void;
  /** Sends a message to the current conversation and shows it. */
  say(text: string, options: { action: boolean }): Promise<void>;
  /**
   * Joins a room (asking for its passphrase, or generating one for a new room), or switches to it when in it;
   * `remember` keeps its secret in the home.
   */
  join(room: string, options: { generate: boolean; remember?: boolean }): Promise<void>;
  /** Asks a question on the terminal (undefined: no answer). */
  ask(question: string): Promise<string | undefined>;
  /** Leaves a room (default: the current one). */
  part(room: string | undefined): Promise<void>;
  /** Switches to a conversation by name (`ops`, `#ops`, `@bob`) or number. */
  switchTo(name: string): void;
  /** Opens (or switches to) the direct conversation with a person. */
  query(nick: string): void;
  /** Shows the current room's topic, or sets it. */
  topic(text: string | undefined): Promise<void>;
  /** Clears the screen and the current conversation's lines. */
  clear(): void;
  /** Sends again the current conversation's lines that were not stored. */
  retry(): Promise<void>;
  /** Leaves the program cleanly, after saying `reason` in every room when given. */
  quit(reason?: string): Promise<void>;
}

/** One slash command. */
export interface Command {
  /** Name without the slash. */
  name: string;
  /** Other names that run it (without the slash). */
  aliases?: string[];
  /** Arguments, as shown in /help. */
  args: string;
  /** One line for /help. */
  help: string;
  /** More lines for /help COMMAND. */
  more?: string[];
  /** What Tab completes the first argument to. */
  complete?: CompletionKind;
  /** It may change the current conversation: lines typed after it, before it finished, go where it leads. */
  moves?: boolean;
  /** Runs it with the rest of the line. */
  run(ctx: CommandContext, args: string): Promise<void>;
}

/** Raised for a command used wrongly; the message is one line for the user. */
export class CommandError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "CommandError";
  }
}

function noArgs(name: string, args: string): void {
  if (args !== "") throw new CommandError(`/${name} takes no arguments`);
}

/** A room name as typed: a leading `#` is dropped, and the name must follow the room rules. */
function roomName(word: string): string {
  const room = word.startsWith("#") ? word.slice(1) : word;
  try {
    validateRoom(room);
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
  return room;
}

/** A nick as typed, checked against the nick rules. */
function nick(text: string | undefined, usage: string): string {
  if (text === undefined) throw new CommandError(`usage: ${usage}`);
  try {
    return validateNick(text);
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
}

/** The first word and the rest of the line (kept as typed). */
function firstWord(args: string): [string | undefined, string] {
  const match = /^(\S+)\s*([\s\S]*)$/.exec(args);
  return match ? [match[1], match[2]] : [undefined, ""];
}

/** The current room, for commands that need one. */
function currentRoom(ctx: CommandContext, name: string): string {
  if (ctx.room === undefined) throw new CommandError(`/${name} works in a room: /switch to one first`);
  return ctx.room;
}

/** Every command, in /help order. */
export const COMMANDS: Command[] = [
  {
    name: "join",
    moves: true,
    args: "ROOM [--generate] [--remember]",
    help: "join ROOM, asking for its passphrase (/help join: the flags)",
    more: [
      "Joining a room that does not exist creates it; an empty passphrase (or --generate) makes a strong one.",
      "In a room already: /join switches to it (its history is not shown again).",
      "--remember keeps the room's secret (never its passphrase) in your home: later runs join without asking.",
    ],
    complete: "conversation",
    async run(ctx, args) {
      const words = args.split(/\s+/).filter((w) => w !== "");
      const flags = words.filter((w) => w.startsWith("--"));
      const rest = words.filter((w) => !w.startsWith("--"));
      if (rest.length !== 1 || flags.some((f) => f !== "--generate" && f !== "--remember")) {
        throw new CommandError("usage: /join ROOM [--generate] [--remember]");
      }
      await ctx.join(roomName(rest[0]), {
        generate: flags.includes("--generate"),
        remember: flags.includes("--remember"),
      });
    },
  },
  {
    name: "part",
    moves: true,
    aliases: ["leave"],
    args: "[ROOM]",
    help: "leave ROOM (default: this one)",
    complete: "conversation",
    async run(ctx, args) {
      const words = args.split(/\s+/).filter((w) => w !== "");
      if (words.length > 1) throw new CommandError("usage: /part [ROOM]");
      await ctx.part(words.length === 0 ? undefined : roomName(words[0]));
    },
  },
  {
    name: "switch",
    moves: true,
    args: "NAME",
    help: "go to a room or conversation by name or number (Alt-1..9, Ctrl-N and Ctrl-P too)",
    complete: "conversation",
    run(ctx, args) {
      if (args === "" || /\s/.test(args)) throw new CommandError("usage: /switch NAME (#room, @nick or a number)");
      ctx.switchTo(args);
      return Promise.resolve();
    },
  },
  {
    name: "query",
    moves: true,
    args: "NICK",
    help: "talk with NICK alone: open (or go to) your direct conversation with them",
    complete: "nick",
    run(ctx, args) {
      try {
        validateNick(args);
      } catch (err) {
        throw new CommandError(`usage: /query NICK (${(err as Error).message})`);
      }
      ctx.query(args);
      return Promise.resolve();
    },
  },
  {
    name: "topic",
    args: "[TEXT]",
    help: "show this room's topic, or set it (end-to-end encrypted like messages)",
    run(ctx, args) {
      return ctx.topic(args === "" ? undefined : args);
    },
  },
  {
    name: "who",
    aliases: ["names"],
    args: "",
    help: "list the members of this room (\u2713 verified, [key changed])",
    async run(ctx, args) {
      noArgs("who", args);
      const room = currentRoom(ctx, "who");
      const members = await ctx.session.who(room);
      const shown = members.map((m) => `${shownNick(m.nick, m.trust)}${m.trust === "changed" ? " [key changed]" : ""}`);
      ctx.status(`in #${room}: ${shown.join(", ")} (${members.length})`);
    },
  },
  {
    name: "rooms",
    args: "",
    help: "list the rooms you are in, with their member counts",
    async run(ctx, args) {
      noArgs("rooms", args);
      const rooms = await ctx.session.listRooms();
      if (rooms.length === 0) return ctx.status("you are in no room");
      // Names from the server, shown like nicks: white space collapsed, cut when very long.
      ctx.status(`rooms: ${rooms.map((r) => `#${displayNick(r.name)} (${r.members})`).join(", ")}`);
    },
  },
  {
    name: "me",
    args: "TEXT",
    help: "say TEXT as an action (* you TEXT)",
    complete: "nick",
    async run(ctx, args) {
      if (args.trim() === "") throw new CommandError("usage: /me TEXT");
      await ctx.say(args, { action: true });
    },
  },
  {
    name: "msg",
    args: "NICK TEXT",
    help: "send NICK a direct message, sealed for their key",
    complete: "nick",
    run(ctx, args) {
      const [who, text] = firstWord(args);
      if (text.trim() === "") throw new CommandError("usage: /msg NICK TEXT");
      ctx.session.say({ peer: nick(who, "/msg NICK TEXT") }, text, { type: "text" });
      return Promise.resolve();
    },
  },
  {
    name: "invite",
    args: "NICK [ROOM]",
    help: "send NICK this room's secret (or ROOM's): they join with /accept",
    more: [
      "An invitation gives everything the passphrase gives, the room's whole history included,",
      "and cannot be taken back (only moving to a new room undoes it).",
    ],
    complete: "nick",
    run(ctx, args) {
      const [who, rest] = firstWord(args);
      const target = rest === "" ? ctx.room : roomName(rest);
      if (target === undefined) throw new CommandError("/invite works in a room, or name the room");
      ctx.session.invite(nick(who, "/invite NICK [ROOM]"), target);
      return Promise.resolve();
    },
  },
  {
    name: "accept",
    moves: true,
    args: "[ROOM]",
    help: "accept the invitation to ROOM (default: the latest): join without a passphrase",
    async run(ctx, args) {
      const joined = await ctx.session.accept(args === "" ? undefined : roomName(args));
      await ctx.join(joined.room, { generate: false });
    },
  },
  {
    name: "whois",
    args: "NICK",
    help: "show NICK's key fingerprint: pinned, verified, or changed",
    complete: "nick",
    async run(ctx, args) {
      const info = await ctx.session.whois(nick(args || undefined, "/whois NICK"));
      const shown = info.fingerprint ? formatFingerprint(info.fingerprint) : "unknown";
      const pinned = info.pinned ? formatFingerprint(info.pinned) : "none";
      const state = info.trust === "changed"
        ? `CHANGED: the pinned key is ${pinned}; check it, then /trust ${info.nick}`
        : info.trust === "verified"
        ? "verified"
        : info.trust === "new"
        ? "first seen now, pinned (not verified: /verify)"
        : "pinned (not verified: /verify)";
      ctx.status(`${shownNick(info.nick, info.trust)}: key ${shown}, ${state}`);
    },
  },
  {
    name: "verify",
    args: "NICK",
    help: "show the safety number you and NICK compare; confirm to mark NICK verified",
    more: ["Compare it in person or on a call: once you confirm, NICK carries \u2713 wherever their nick shows."],
    complete: "nick",
    async run(ctx, args) {
      const { nick: who, number } = await ctx.session.safetyNumber(nick(args || undefined, "/verify NICK"));
      ctx.status(`safety number with ${displayNick(who)}:`);
      for (const row of number.match(/(\d{5} ?){1,4}/g) ?? [number]) ctx.status(`  ${row.trim()}`);
      const answer = await ctx.ask(`does ${displayNick(who)} see exactly the same number? [y/N] `);
      if (!/^y(es)?$/i.test(answer?.trim() ?? "")) return ctx.status(`${displayNick(who)} not marked verified`);
      ctx.session.verify(who);
      ctx.status(`${shownNick(who, "verified")} is verified`);
    },
  },
  {
    name: "trust",
    args: "NICK",
    help: "accept the new key NICK shows, after checking it (the [key changed] mark goes)",
    complete: "nick",
    async run(ctx, args) {
      const who = nick(args || undefined, "/trust NICK");
      const info = await ctx.session.whois(who).catch(() => undefined);
      const offered = info?.trust === "changed" ? info.fingerprint : undefined;
      if (offered !== undefined) {
        ctx.status(`pinned:  ${info?.pinned ? formatFingerprint(info.pinned) : "none"}`);
        ctx.status(`offered: ${formatFingerprint(offered)}`);
        const answer = await ctx.ask(`trust the offered key of ${displayNick(who)}? [y/N] `);
        if (!/^y(es)?$/i.test(answer?.trim() ?? "")) return ctx.status("nothing changed");
      }
      const trusted = await ctx.session.trust(who, { fingerprint: offered });
      if (!trusted) return ctx.warn(`${displayNick(who)} shows no other key than the pinned one: nothing to trust`);
      ctx.status(`${displayNick(who)}: now trusting ${formatFingerprint(trusted)} (not verified: /verify)`);
    },
  },
  {
    name: "forget",
    args: "ROOM",
    help: "forget ROOM's pinned parameters (its operator re-created it)",
    complete: "conversation",
    async run(ctx, args) {
      if (args === "") throw new CommandError("usage: /forget ROOM");
      const target = roomName(args);
      const found = await ctx.session.forgetRoom(target);
      ctx.status(found ? `forgot #${target}: the next join pins it afresh` : `nothing was pinned for #${target}`);
    },
  },
  {
    name: "nick",
    args: "NEW",
    help: "change your nick (the server registers it to your key)",
    async run(ctx, args) {
      try {
        validateNick(args);
      } catch (err) {
        throw new CommandError((err as Error).message);
      }
      await ctx.session.changeNick(args);
    },
  },
  {
    name: "history",
    args: "[N]",
    help: "show N older messages (default 20)",
    async run(ctx, args) {
      const n = args === "" ? 20 : Number(args);
      if (!Number.isInteger(n) || n < 1 || n > HISTORY_PAGE) {
        throw new CommandError(`usage: /history [N], N from 1 to ${HISTORY_PAGE}`);
      }
      const { shown, more } = await ctx.session.older(currentRoom(ctx, "history"), n);
      if (shown === 0) ctx.status(more ? "no older message could be shown" : "no older messages");
    },
  },
  {
    name: "retry",
    args: "",
    help: "send again the lines of this conversation that were not stored (marked \u2717)",
    run(ctx, args) {
      noArgs("retry", args);
      return ctx.retry();
    },
  },
  {
    name: "clear",
    args: "",
    help: "clear the screen and this conversation's lines",
    run(ctx, args) {
      noArgs("clear", args);
      ctx.clear();
      return Promise.resolve();
    },
  },
  {
    name: "help",
    args: "[COMMAND]",
    help: "show this help, or more about one command",
    complete: "command",
    run(ctx, args) {
      for (const line of args === "" ? helpLines() : commandHelp(args)) ctx.status(line);
      return Promise.resolve();
    },
  },
  {
    name: "quit",
    args: "[REASON]",
    help: "leave, saying REASON in every room when given (Ctrl-D, or Ctrl-C on an empty line, too)",
    more: ["With lines not yet stored, it asks before leaving."],
    run(ctx, args) {
      return ctx.quit(args === "" ? undefined : args);
    },
  },
];

/**
 * A command by its name or one of its aliases (any case, with or without the slash).
 *
 * @param name what the user typed
 * @returns the command, or undefined
 */
export function findCommand(name: string): Command | undefined {
  const wanted = name.replace(/^\//, "").toLowerCase();
  return COMMANDS.find((c) => c.name === wanted || (c.aliases ?? []).includes(wanted));
}

/**
 * Whether a typed line is a command that may change the current conversation (/join, /part, /switch, /query,
 * /accept), so that the lines typed after it belong where it leads.
 *
 * @example
 * ```ts
 * movesConversation("/join #ops"); // true
 * movesConversation("//join"); // false: a message
 * ```
 * @param line what the user typed
 * @returns true for such a command
 */
export function movesConversation(line: string): boolean {
  const match = /^\/([^\s/]\S*)/.exec(line);
  return match !== null && !line.includes("\n") && findCommand(match[1])?.moves === true;
}

/** Every name Tab completes after a slash: the commands and their aliases. */
export function commandNames(): string[] {
  return COMMANDS.flatMap((c) => [c.name, ...(c.aliases ?? [])]);
}

function usage(c: Command): string {
  return `/${c.name}${c.args ? " " + c.args : ""}`;
}

function aliases(c: Command): string {
  return c.aliases ? ` (also ${c.aliases.map((a) => "/" + a).join(", ")})` : "";
}

/**
 * The lines of /help, generated from {@link COMMANDS}.
 *
 * @example
 * ```ts
 * helpLines()[0]; // "/join ROOM [--generate]  join ROOM, asking for its passphrase …"
 * ```
 * @returns one line per command, then the keys, then a note on plain text
 */
export function helpLines(): string[] {
  return [
    ...COMMANDS.map((c) => `${usage(c).padEnd(24)} ${c.help}${aliases(c)}`),
    "Keys: Tab completes nicks and commands; Alt-1..9, Ctrl-N and Ctrl-P switch conversations; Ctrl-C clears the line.",
    "Anything else is sent to the current conversation. Start a message with // to send a line that begins with /.",
  ];
}

/**
 * The lines of /help COMMAND.
 *
 * @example
 * ```ts
 * commandHelp("names"); // ["/who: list the members of this room (also /names)"]
 * ```
 * @param name the command or an alias, with or without the slash
 * @returns the lines
 * @throws {CommandError} for an unknown command
 */
export function commandHelp(name: string): string[] {
  const command = findCommand(name.trim());
  if (!command) throw new CommandError(`no command /${name.trim().replace(/^\//, "")}: type /help for the list`);
  return [`${usage(command)}: ${command.help}${aliases(command)}`, ...(command.more ?? [])];
}

/**
 * Runs one input line: a command, or a message.
 *
 * @example
 * ```ts
 * await runLine(ctx, "/who");
 * await runLine(ctx, "hello everyone");
 * ```
 * @param ctx the user interface and session
 * @param line what the user typed
 */
export async function runLine(ctx: CommandContext, line: string): Promise<void> {
  const text = line.trimEnd();
  if (text.trim() === "") return;
  try {
    // A pasted multi-line message is a message, whatever its first line looks like (even once its trailing line
    // breaks are trimmed).
    if (line.includes("\n")) return await ctx.say(text, { action: false });
    if (text.startsWith("//")) return await ctx.say(text.slice(1), { action: false });
    if (!text.startsWith("/")) return await ctx.say(text, { action: false });
    const space = text.search(/\s/);
    const name = (space < 0 ? text.slice(1) : text.slice(1, space)).toLowerCase();
    const args = space < 0 ? "" : text.slice(space + 1).trim();
    const command = findCommand(name);
    if (!command) return ctx.warn(`unknown command /${name}: type /help for the list`);
    await command.run(ctx, args);
  } catch (err) {
    if (err instanceof CommandError || err instanceof SendError || err instanceof JoinError) {
      return ctx.warn(err.message);
    }
    throw err;
  }
}
