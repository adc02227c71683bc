/**
 * The interactive slash commands: one table that both dispatches and generates /help.
 *
 * @module
 */

import { formatFingerprint } from "../identity.ts";
import { validateNick } from "../names.ts";
import { HISTORY_PAGE } from "../protocol.ts";
import { roomArgument } from "./config.ts";
import { displayNick, shownNick } from "./render.ts";
import { JoinError, SendError, type Session } from "./session.ts";

/** What a command can do to the user interface and the session. */
export interface CommandContext {
  /** The chat session. */
  session: Session;
  /** The room typed lines go to (the terminal's current room). */
  readonly room: string | undefined;
  /** Prints a status line. */
  status(text: string): void;
  /** Prints a warning line. */
  warn(text: string): void;
  /** Asks a question on the terminal (undefined: no answer). */
  ask(question: string): Promise<string | undefined>;
  /** Sends a message to the current room and shows it. */
  say(text: string, options: { action: boolean; type?: "topic" }): Promise<void>;
  /** Joins a room (or switches to it when already in), asking for its passphrase (or generating one). */
  join(room: string, options: { generate: boolean; remember?: boolean }): Promise<void>;
  /** Leaves a room. */
  part(room: string): Promise<void>;
  /** Leaves the program cleanly. */
  quit(): Promise<void>;
}

/** One slash command. */
export interface Command {
  /** Name without the slash. */
  name: string;
  /** Other names it answers to. */
  aliases?: string[];
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

function noArgs(name: string, args: string): void {
  if (args !== "") throw new CommandError(`/${name} takes no arguments`);
}

function words(args: string): string[] {
  return args.split(/\s+/).filter((w) => w !== "");
}

function room(text: string): string {
  try {
    return roomArgument(text);
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
}

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

/** Every command, in /help order. */
export const COMMANDS: Command[] = [
  {
    name: "join",
    args: "ROOM [--generate] [--remember]",
    help: "join ROOM (or switch to it), asking for its passphrase; --generate makes a strong one for a new room, " +
      "--remember keeps its secret in your home",
    async run(ctx, args) {
      const all = words(args);
      const flags = all.filter((w) => w.startsWith("--"));
      const rest = all.filter((w) => !w.startsWith("--"));
      const unknown = flags.filter((f) => f !== "--generate" && f !== "--remember");
      if (rest.length !== 1 || unknown.length > 0) {
        throw new CommandError("usage: /join ROOM [--generate] [--remember]");
      }
      await ctx.join(room(rest[0]), { generate: flags.includes("--generate"), remember: flags.includes("--remember") });
    },
  },
  {
    name: "part",
    aliases: ["leave"],
    args: "[ROOM]",
    help: "leave ROOM (default: this room)",
    async run(ctx, args) {
      const target = args === "" ? ctx.room : room(args);
      if (target === undefined) throw new CommandError("you are in no room");
      await ctx.part(target);
    },
  },
  {
    name: "who",
    args: "[ROOM]",
    help: "list the members of this room (or ROOM), with a mark for keys you verified or that changed",
    async run(ctx, args) {
      const target = args === "" ? ctx.room : room(args);
      const members = await ctx.session.who(target);
      const shown = members.map((m) => `${shownNick(m.nick, m.trust)}${m.trust === "changed" ? " [key changed]" : ""}`);
      ctx.status(`in #${target}: ${shown.join(", ")} (${members.length})`);
    },
  },
  {
    name: "rooms",
    args: "",
    help: "list the rooms you are in, with their member counts",
    async run(ctx, args) {
      noArgs("rooms", args);
      const rooms = await ctx.session.roomList();
      if (rooms.length === 0) return ctx.status("you are in no room");
      // Names from the server, shown like nicks: white space collapsed, cut when very long.
      ctx.status(`rooms: ${rooms.map((r) => `#${displayNick(r.name)} (${r.count})`).join(", ")}`);
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
    name: "topic",
    args: "TEXT",
    help: "set this room's topic (end-to-end encrypted, like messages)",
    async run(ctx, args) {
      if (args.trim() === "") throw new CommandError("usage: /topic TEXT");
      await ctx.say(args, { action: false, type: "topic" });
    },
  },
  {
    name: "msg",
    args: "NICK TEXT",
    help: "send NICK a direct message, sealed for their key",
    run(ctx, args) {
      const [who, text] = firstWord(args);
      if (text.trim() === "") throw new CommandError("usage: /msg NICK TEXT");
      ctx.session.msg(nick(who, "/msg NICK TEXT"), text);
      return Promise.resolve();
    },
  },
  {
    name: "invite",
    args: "NICK [ROOM]",
    help: "send NICK this room's secret (or ROOM's) over the direct channel: they join with /accept; cannot be undone",
    run(ctx, args) {
      const [who, rest] = firstWord(args);
      const target = rest === "" ? ctx.room : room(rest);
      if (target === undefined) throw new CommandError("join a room first");
      ctx.session.invite(nick(who, "/invite NICK [ROOM]"), { room: target });
      ctx.status(`inviting ${displayNick(who!)} to #${target}: it gives them everything the passphrase gives`);
      return Promise.resolve();
    },
  },
  {
    name: "accept",
    args: "[ROOM]",
    help: "accept the invitation to ROOM (default: the latest) and join it without a passphrase",
    async run(ctx, args) {
      const joined = await ctx.session.accept(args === "" ? undefined : room(args));
      await ctx.join(joined.room, { generate: false });
    },
  },
  {
    name: "whois",
    args: "NICK",
    help: "show NICK's key fingerprint and whether it is the one you pinned, verified or changed",
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
    help: "show the safety number you and NICK compare (in person, or over a call); confirm to mark NICK verified",
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
    help: "accept the new key NICK shows (after checking it): its messages lose the [key changed] mark",
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
    help: "forget ROOM's pinned parameters (after its operator re-created it); the next join pins afresh",
    async run(ctx, args) {
      if (args === "") throw new CommandError("usage: /forget ROOM");
      const target = room(args);
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
    help: "show N older messages of this room (default 20)",
    async run(ctx, args) {
      const n = args === "" ? 20 : Number(args);
      if (!Number.isInteger(n) || n < 1 || n > HISTORY_PAGE) {
        throw new CommandError(`usage: /history [N], N from 1 to ${HISTORY_PAGE}`);
      }
      const { shown, more } = await ctx.session.older(n, { room: ctx.room });
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
 * helpLines()[0]; // "/join ROOM [--generate] [--remember]   join ROOM (or switch to it), …"
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
    const command = COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
    if (!command) return ctx.warn(`unknown command /${name}: type /help for the list`);
    await command.run(ctx, args);
  } catch (err) {
    if (err instanceof CommandError || err instanceof SendError || err instanceof JoinError) {
      return ctx.warn(err.message);
    }
    throw err;
  }
}
