/**
 * The interactive slash commands: one table that both dispatches and generates /help.
 *
 * @module
 */

import { validateNick, validateRoom } from "../names.ts";
import { HISTORY_PAGE } from "../protocol.ts";
import { displayNick } from "./render.ts";
import { JoinError, SendError, type Session } from "./session.ts";

/** What a command can do to the user interface and the session. */
export interface CommandContext {
  /** The chat session. */
  session: Session;
  /** Prints a status line. */
  status(text: string): void;
  /** Prints a warning line. */
  warn(text: string): void;
  /** Sends a message and shows it. */
  say(text: string, options: { action: boolean }): Promise<void>;
  /** Joins a room, asking for its passphrase (or generating one for a new room). */
  join(room: string, options: { generate: boolean }): Promise<void>;
  /** Leaves the program cleanly. */
  quit(): Promise<void>;
}

/** One slash command. */
export interface Command {
  /** Name without the slash. */
  name: string;
  /** Arguments, as shown in /help. */
  args: string;
  /** One line for /help. */
  help: string;
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

/** The room /leave goes back to. */
export const HOME_ROOM = "general";

function noArgs(name: string, args: string): void {
  if (args !== "") throw new CommandError(`/${name} takes no arguments`);
}

/** Every command, in /help order. */
export const COMMANDS: Command[] = [
  {
    name: "join",
    args: "ROOM [--generate]",
    help: "join ROOM, asking for its passphrase (--generate: make a strong one for a new room)",
    async run(ctx, args) {
      const words = args.split(/\s+/).filter((w) => w !== "");
      const generate = words.includes("--generate");
      const rest = words.filter((w) => w !== "--generate");
      if (rest.length !== 1) throw new CommandError("usage: /join ROOM [--generate]");
      try {
        validateRoom(rest[0]);
      } catch (err) {
        throw new CommandError((err as Error).message);
      }
      await ctx.join(rest[0], { generate });
    },
  },
  {
    name: "leave",
    args: "",
    help: `leave this room and go back to #${HOME_ROOM}`,
    async run(ctx, args) {
      noArgs("leave", args);
      if (ctx.session.room === HOME_ROOM) throw new CommandError(`you are already in #${HOME_ROOM}`);
      await ctx.join(HOME_ROOM, { generate: false });
    },
  },
  {
    name: "who",
    args: "",
    help: "list the members of this room",
    async run(ctx, args) {
      noArgs("who", args);
      const members = await ctx.session.who();
      ctx.status(`in #${ctx.session.room}: ${members.map(displayNick).join(", ")} (${members.length})`);
    },
  },
  {
    name: "rooms",
    args: "",
    help: "list the rooms that have people in them",
    async run(ctx, args) {
      noArgs("rooms", args);
      const rooms = await ctx.session.rooms();
      if (rooms.length === 0) return ctx.status("no room has members");
      // Names from the server, shown like nicks: white space collapsed, cut when very long.
      ctx.status(`rooms: ${rooms.map((r) => `#${displayNick(r.name)} (${r.members})`).join(", ")}`);
    },
  },
  {
    name: "me",
    args: "TEXT",
    help: "say TEXT as an action (* you TEXT)",
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
      const { shown, more } = await ctx.session.older(n);
      if (shown === 0) ctx.status(more ? "no older message could be shown" : "no older messages");
    },
  },
  {
    name: "help",
    args: "",
    help: "show this help",
    run(ctx) {
      for (const line of helpLines()) ctx.status(line);
      return Promise.resolve();
    },
  },
  {
    name: "quit",
    args: "",
    help: "leave (Ctrl-C and Ctrl-D do too)",
    run(ctx) {
      return ctx.quit();
    },
  },
];

/**
 * The lines of /help, generated from {@link COMMANDS}.
 *
 * @example
 * ```ts
 * helpLines()[0]; // "/join ROOM [--generate]   join ROOM (asks for its passphrase); …"
 * ```
 * @returns one line per command, then a note on plain text
 */
export function helpLines(): string[] {
  return [
    ...COMMANDS.map((c) => `/${(c.name + (c.args ? " " + c.args : "")).padEnd(24)} ${c.help}`),
    "Anything else is sent to the room. Start a message with // to send a line that begins with /.",
  ];
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
    if (text.startsWith("//")) return await ctx.say(text.slice(1), { action: false });
    if (!text.startsWith("/")) return await ctx.say(text, { action: false });
    const space = text.search(/\s/);
    const name = (space < 0 ? text.slice(1) : text.slice(1, space)).toLowerCase();
    const args = space < 0 ? "" : text.slice(space + 1).trim();
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) return ctx.warn(`unknown command /${name}: type /help for the list`);
    await command.run(ctx, args);
  } catch (err) {
    if (err instanceof CommandError || err instanceof SendError || err instanceof JoinError) {
      return ctx.warn(err.message);
    }
    throw err;
  }
}
