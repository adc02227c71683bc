/**
 * The interactive slash commands: one table that both dispatches and generates /help.
 *
 * @module
 */

import { validateNick, validateRoom } from "../names.ts";
import { HISTORY_PAGE } from "../protocol.ts";
import type { ChatSession } from "./chat_session.ts";
import type { CompletionKind } from "./completion.ts";
import { displayNick } from "./render.ts";
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
  /** Joins a room (asking for its passphrase, or generating one for a new room), or switches to it when in it. */
  join(room: string, options: { generate: boolean }): Promise<void>;
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

/** The room /part goes back to on a server with one room per connection. */
export const HOME_ROOM = "general";

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

/** The current room, for commands that need one. */
function currentRoom(ctx: CommandContext, name: string): string {
  if (ctx.room === undefined) throw new CommandError(`/${name} works in a room: /switch to one first`);
  return ctx.room;
}

/** Every command, in /help order. */
export const COMMANDS: Command[] = [
  {
    name: "join",
    args: "ROOM [--generate]",
    help: "join ROOM, asking for its passphrase (--generate: make a strong one for a new room)",
    more: [
      "Joining a room that does not exist creates it; an empty passphrase (or --generate) makes a strong one.",
      "In a room already: /join switches to it (its history is not shown again).",
    ],
    complete: "conversation",
    async run(ctx, args) {
      const words = args.split(/\s+/).filter((w) => w !== "");
      const generate = words.includes("--generate");
      const rest = words.filter((w) => w !== "--generate");
      if (rest.length !== 1) throw new CommandError("usage: /join ROOM [--generate]");
      await ctx.join(roomName(rest[0]), { generate });
    },
  },
  {
    name: "part",
    aliases: ["leave"],
    args: "[ROOM]",
    help: "leave ROOM (default: this one); with one room per connection, go back to #" + HOME_ROOM,
    complete: "conversation",
    async run(ctx, args) {
      const words = args.split(/\s+/).filter((w) => w !== "");
      if (words.length > 1) throw new CommandError("usage: /part [ROOM]");
      await ctx.part(words.length === 0 ? undefined : roomName(words[0]));
    },
  },
  {
    name: "switch",
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
    help: "list the members of this room",
    async run(ctx, args) {
      noArgs("who", args);
      const room = currentRoom(ctx, "who");
      const members = await ctx.session.who(room);
      ctx.status(`in #${room}: ${members.map(displayNick).join(", ")} (${members.length})`);
    },
  },
  {
    name: "rooms",
    args: "",
    help: "list the rooms that have people in them",
    async run(ctx, args) {
      noArgs("rooms", args);
      const rooms = await ctx.session.listRooms();
      if (rooms.length === 0) return ctx.status("no room has members");
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
    name: "nick",
    args: "NEW",
    help: "change your nick",
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
