/**
 * The interactive chat on a terminal, on top of screen.ts (every touch of the terminal), conversation_view.ts (what
 * is shown where) and a session behind chat_session.ts's interface: the nick and passphrase questions, joining,
 * parting and switching rooms, the slash commands of commands.ts, one ordered queue of typed lines, a pasted
 * multi-line message confirmed when long, Tab completion, and leaving (asking first when lines are unsent).
 *
 * @module
 */

import { MAX_BODY_BYTES } from "../envelope.ts";
import { formatFingerprint } from "../identity.ts";
import { foldName, validateNick } from "../names.ts";
import { CLIENT_EXIT, type ClientConfig, EXIT_OF_CLOSE } from "./config.ts";
import { type ChatEvent, type ChatSession, type ChatTarget, type ConnectChat, connectSession } from "./chat_session.ts";
import {
  type CommandContext,
  CommandError,
  commandNames,
  findCommand,
  movesConversation,
  runLine,
} from "./commands.ts";
import { type Completed, Completer } from "./completion.ts";
import { conversationKey } from "./conversations.ts";
import { ConversationView } from "./conversation_view.ts";
import { Home, HomeError } from "./home.ts";
import type { Dial } from "./link.ts";
import type { OutboxItem } from "./outbox.ts";
import { generatePassphrase, isWeakPassphrase, WEAK_PASSPHRASE_CHARS } from "./passphrase.ts";
import { compareInvitations } from "./inbox.ts";
import { displayNick, shownNick } from "./render.ts";
import { Screen, type TerminalInput, type TerminalOutput } from "./screen.ts";
import {
  type InvitationShown,
  type Joined,
  JoinError,
  type JoinHooks,
  type ReconnectPolicy,
  SendError,
  SessionError,
} from "./session.ts";

/** Wrong passphrases allowed at one prompt before giving up. */
const PASSPHRASE_TRIES = 3;
/** Longest wait for unstored messages when quitting while connected. */
const QUIT_DRAIN_MS = 5_000;
/** A pasted message of more lines than this is sent only after a yes. */
const CONFIRM_LINES = 5;

/** Where the interactive chat runs, and how it reaches the server. */
export interface TerminalOptions {
  /** Opens the connection (link.ts `dialServer`). */
  dial?: Dial;
  /** Opens the session instead of a session over `dial` (a test double). */
  connect?: ConnectChat;
  /** The home's directory ($AESCHAT_HOME or its default); undefined only with `connect` and `home`. */
  homeDir?: string;
  /** An open home instead of `homeDir` (tests). */
  home?: Home;
  /** A passphrase given by environment or file, for the first room. */
  passphrase?: string;
  /** Reconnect delays (the interactive client never gives up on its own). */
  reconnect?: Partial<ReconnectPolicy>;
  /** The input (default process.stdin). */
  input?: TerminalInput;
  /** The output (default process.stdout). */
  output?: TerminalOutput;
  /** Colour on (default: stdout is a terminal and NO_COLOR is not set). */
  colour?: boolean;
  /** The clock (default Date.now). */
  now?: () => number;
}

const isYes = (answer: string | undefined) => /^y(es)?$/i.test(answer?.trim() ?? "");

/** Whether an answer to a passphrase question is `/accept` (of that room, or none named), as the invitation said. */
function isAcceptLine(answer: string, room: string): boolean {
  const match = /^\/accept(?:\s+#?(\S+))?\s*$/.exec(answer.trim());
  return match !== null && (match[1] === undefined || foldName(match[1]) === foldName(room));
}

/** The conversation key of where an outbox item went. */
function targetOf(item: OutboxItem): ChatTarget {
  return item.to !== undefined ? { peer: item.to } : { room: item.room };
}

/** One interactive session on the terminal. */
class Chat {
  readonly screen: Screen;
  readonly view: ConversationView;
  session: ChatSession | undefined;
  #config: ClientConfig;
  #options: TerminalOptions;
  /** Typed lines run one after another, in the order typed. */
  #lines: Promise<void> = Promise.resolve();
  /** Commands that may change the current conversation, typed and not yet finished. */
  #moving = 0;
  #quitting = false;
  #done!: (code: number) => void;
  readonly finished: Promise<number>;
  #preset: string | undefined;
  #completer = new Completer();
  /** The room whose passphrase question was answered with "accept the invitation". */
  #acceptInstead: string | undefined;

  constructor(config: ClientConfig, options: TerminalOptions) {
    this.#config = config;
    this.#options = options;
    this.#preset = options.passphrase;
    const terminal = options.output ? options.output.isTTY !== false : Deno.stdout.isTerminal();
    const colour = options.colour ?? (terminal && !Deno.noColor);
    this.screen = new Screen({ input: options.input, output: options.output, maxLineBytes: MAX_BODY_BYTES });
    this.view = new ConversationView(this.screen, {
      colour,
      bell: !config.noBell,
      highlight: terminal,
      now: options.now,
    });
    this.finished = new Promise((resolve) => this.#done = resolve);
  }

  status(text: string): void {
    this.view.status(text);
  }

  warn(text: string): void {
    this.view.warn(text);
  }

  /** What commands can do, for a line typed while `target` was the current conversation. */
  #context(target: ChatTarget | undefined): CommandContext {
    const session = () => this.session!;
    return {
      get session() {
        return session();
      },
      room: target && "room" in target ? target.room : undefined,
      status: (text) => this.status(text),
      warn: (text) => this.warn(text),
      say: (text, { action }) => {
        if (!target) throw new SendError("join a room first");
        this.session!.say(target, text, { type: action ? "action" : "text" });
        return Promise.resolve();
      },
      join: async (room, { generate, remember }) => {
        await this.join(room, generate, { remember });
      },
      ask: (question) => this.screen.ask(question),
      part: (room) => this.#part(room ?? (target && "room" in target ? target.room : undefined)),
      switchTo: (name) => this.#switchTo(name),
      query: (nick) => this.#query(nick),
      topic: (text) => this.#topic(target, text),
      clear: () => this.view.clear(),
      retry: () => this.#retry(),
      quit: (reason) => this.quit({ ask: true, reason }),
    };
  }

  onEvent = (event: ChatEvent): void => {
    if (event.kind !== "closed") return this.view.onEvent(event);
    // A refusal that retrying cannot fix (wrong passphrase on rejoining, a nick the server will never take).
    if (this.#quitting) return;
    this.view.onEvent(event);
    this.warn(`${event.error.message}: stopped reconnecting`);
    this.end(EXIT_OF_CLOSE[event.error.kind]);
  };

  hooks(generate: boolean): JoinHooks {
    return {
      passphrase: async (room, { creating, createdMeanwhile }) => {
        if (creating) return await this.#newPassphrase(room, generate);
        if (createdMeanwhile) this.view.notice(`#${room} was created meanwhile by someone else: enter its passphrase`);
        else if (generate) this.view.notice(`#${room} already exists: --generate was ignored`);
        if (this.#preset !== undefined) {
          const p = this.#preset;
          this.#preset = undefined;
          return p;
        }
        const invitation = this.#invitationTo(room);
        const question = invitation
          ? `passphrase for #${room} (empty: accept ${shownNick(invitation.from, invitation.trust)}'s invitation): `
          : `passphrase for #${room}: `;
        const answer = await this.screen.ask(question, { secret: true });
        if (invitation && answer !== undefined && (answer === "" || isAcceptLine(answer, room))) {
          // The join is cancelled here, and join() accepts the invitation instead: one join, no passphrase.
          this.#acceptInstead = room;
          return undefined;
        }
        // Enter on nothing declines, like Ctrl-C: no passphrase is empty, and nothing is derived from one.
        return answer === "" ? undefined : answer;
      },
      deriving: (_room, { iterations }) => {
        const what = `deriving room key (${iterations} iterations)`;
        const stop = this.screen.spinner(`${what}…`);
        return () => this.view.notice(`${what}: done in ${stop().toFixed(1)} s`);
      },
    };
  }

  /**
   * The invitation to `room` that an empty answer to its passphrase question accepts: from an inviter whose key is
   * the one pinned (the most trusted, then the newest). Invitations signed by a changed key are not offered: a line
   * says what to check first.
   */
  #invitationTo(room: string): InvitationShown | undefined {
    const fold = foldName(room);
    const all = this.session!.invitations().filter((i) => foldName(i.room) === fold);
    const best = all.filter((i) => i.trust !== "changed").sort(compareInvitations)[0];
    if (best === undefined) {
      for (const { from } of all) {
        this.view.notice(
          `[key changed] ${displayNick(from)} invites you to #${room}, signed by a key that differs from the one you ` +
            `pinned: not offered; check it (/whois ${from}), /trust ${from} if it is right, then /accept ${room}`,
          { warning: true },
        );
      }
      return undefined;
    }
    if (best.trust === "new") {
      this.view.notice(
        `${displayNick(best.from)}'s key ${formatFingerprint(best.fingerprint)} is new to you: accepting trusts it; ` +
          `/verify ${best.from} to be sure`,
      );
    }
    return best;
  }

  async #newPassphrase(room: string, generate: boolean): Promise<string | undefined> {
    // The lines of this question are about the room being made, not the one that is current: kept in none (notice).
    this.view.notice(`#${room} does not exist yet: creating it`);
    const given = this.#preset;
    this.#preset = undefined;
    let passphrase = generate ? "" : (given ?? await this.screen.ask(
      `choose a passphrase for #${room} (empty: generate a strong one): `,
      { secret: true },
    ));
    if (passphrase === undefined) return undefined;
    if (passphrase === "") {
      passphrase = generatePassphrase();
      this.view.notice(`passphrase for #${room}: ${passphrase}`);
      this.view.notice("share it with your team over a channel you trust; it is not shown again");
      return passphrase;
    }
    if (isWeakPassphrase(passphrase)) {
      this.view.notice(
        `this passphrase is shorter than ${WEAK_PASSPHRASE_CHARS} characters: anyone who guesses it reads #${room}`,
        { warning: true },
      );
      if (!isYes(await this.screen.ask("create the room with it anyway? [y/N] "))) return undefined;
    }
    if (given === undefined) {
      const again = await this.screen.ask("repeat the passphrase: ", { secret: true });
      if (again !== passphrase) {
        this.view.notice("the passphrases differ", { warning: true });
        return undefined;
      }
    }
    return passphrase;
  }

  /**
   * Joins a room and makes it current; a room this connection is in already is only switched to (its history is
   * not shown again).
   */
  async join(
    room: string,
    generate: boolean,
    options: { remember?: boolean } = {},
  ): Promise<"joined" | "cancelled" | "failed" | "changed"> {
    const session = this.session!;
    const inRoom = session.joinedRoom(room);
    if (inRoom !== undefined) {
      if (generate) this.status(`#${inRoom} already exists: --generate was ignored`);
      const key = conversationKey("room", inRoom);
      if (this.view.currentKey === key) this.status(`you are in #${inRoom}`);
      else this.view.switchTo(key);
      return "joined";
    }
    for (let attempt = 1;; attempt++) {
      const fromPreset = this.#preset !== undefined;
      this.view.expect(room);
      try {
        const joined = await this.#joinOrAccept(room, generate, options);
        this.view.joined(joined.room, { members: joined.members });
        const members = joined.members.map(displayNick);
        this.status(
          `${joined.created ? "created" : "joined"} #${joined.room}: ${members.join(", ")} ${
            members.length === 1 ? "is" : "are"
          } here`,
        );
        return "joined";
      } catch (err) {
        if (!(err instanceof JoinError)) throw err;
        if (err.code === "cancelled") {
          this.status(`not joined #${room}`);
          return "cancelled";
        }
        this.warn(err.message);
        // A room whose pinned parameters changed, or too weak to join: exit 7 at start (forget-room is the way on).
        if (err.code === "changed" || err.code === "weak") return "changed";
        if (err.code !== "access_denied" || fromPreset || attempt >= PASSPHRASE_TRIES) return "failed";
      } finally {
        this.view.expect(undefined);
      }
    }
  }

  /** Joins a room, or accepts the invitation to it when the passphrase question was answered so. */
  async #joinOrAccept(room: string, generate: boolean, options: { remember?: boolean }): Promise<Joined> {
    const session = this.session!;
    this.#acceptInstead = undefined;
    try {
      return await session.join(room, this.hooks(generate), options);
    } catch (err) {
      const accept = this.#acceptInstead;
      this.#acceptInstead = undefined;
      if (!(err instanceof JoinError && err.code === "cancelled" && accept !== undefined)) throw err;
      const joined = await session.accept(accept);
      const by = joined.invitedBy === undefined ? "the" : `${displayNick(joined.invitedBy)}'s`;
      this.status(`accepted ${by} invitation to #${joined.room}`);
      return joined;
    }
  }

  /** Leaves a room (its conversation closes). */
  async #part(room: string | undefined): Promise<void> {
    const session = this.session!;
    if (room === undefined) throw new CommandError("/part works in a room: name the room to leave");
    const joined = session.joinedRoom(room);
    if (joined === undefined) throw new CommandError(`not in #${room}`);
    await session.part(joined);
    // The session says "parted" too: the view closes the conversation and says so once.
    this.view.parted(joined);
  }

  #switchTo(name: string): void {
    const key = this.view.conversations.find(name);
    if (key === undefined) throw new CommandError(`no conversation ${name}: /join a room first`);
    if (key === this.view.currentKey) this.status(`you are in ${key}`);
    else this.view.switchTo(key);
  }

  #query(nick: string): void {
    const name = this.session!.peerName(nick);
    const key = conversationKey("direct", name);
    this.view.conversations.open("direct", name);
    if (key === this.view.currentKey) this.status(`you are in ${key}`);
    else this.view.switchTo(key);
  }

  async #topic(target: ChatTarget | undefined, text: string | undefined): Promise<void> {
    if (!target || !("room" in target)) throw new CommandError("/topic works in a room");
    const session = this.session!;
    if (text === undefined) {
      const topic = this.view.conversations.get(conversationKey("room", target.room))?.topic;
      return this.status(topic ? `topic of #${target.room}: ${topic}` : `#${target.room} has no topic`);
    }
    session.say(target, text, { type: "topic" });
    await Promise.resolve();
  }

  async #retry(): Promise<void> {
    const failed = this.view.takeFailed();
    if (failed.length === 0) return this.status("nothing to send again here");
    this.status(`sending ${failed.length} line${failed.length === 1 ? "" : "s"} again`);
    for (const item of failed) {
      const type = item.text.type === "action" ? "action" : "text";
      this.session!.say(targetOf(item), item.text.body, { type });
    }
    await Promise.resolve();
  }

  /**
   * Runs typed lines one after another, each in the conversation that was current when it was typed (or, typed
   * after a /join, /query, /switch or /part that had not finished, where that command led): a line typed after
   * /nick is sealed under the new nick.
   */
  enqueue(line: string): void {
    // A line typed while a /join (or /query, /switch, /part) before it has not finished goes where that command
    // leads: its conversation is the one current when the line runs, not the one current when it was typed.
    const context = this.#moving > 0 ? undefined : this.#context(this.view.target);
    const moves = movesConversation(line);
    if (moves) this.#moving++;
    this.#lines = this.#lines.then(async () => {
      try {
        if (line.includes("\n") && !(await this.#confirmLines(line))) return;
        await runLine(context ?? this.#context(this.view.target), line);
      } finally {
        if (moves) this.#moving--;
      }
    }).catch((err) => this.warn(`internal error: ${(err as Error).message}`));
  }

  /** A pasted message of many lines is sent only after a yes; otherwise it goes back to the input line. */
  async #confirmLines(line: string): Promise<boolean> {
    const text = line.trimEnd();
    const count = text.split("\n").length;
    if (count <= CONFIRM_LINES) return true;
    if (isYes(await this.screen.ask(`send these ${count} lines as one message? [y/N] `))) return true;
    this.screen.putBack(text);
    this.status("not sent: the lines are back in the input line");
    return false;
  }

  complete(text: string, cursor: number): Completed | undefined {
    const sources = this.view.completion(commandNames(), (name) => findCommand(name)?.complete);
    return this.#completer.complete(text, cursor, sources);
  }

  /**
   * Leaves: says the reason in every room (when given), waits a moment for lines on their way to be stored, asks
   * before dropping unsent ones (when it can ask), says goodbye and ends.
   */
  async quit(options: { ask: boolean; reason?: string }): Promise<void> {
    if (this.#quitting) return;
    this.#quitting = true;
    const session = this.session;
    if (session?.online && options.reason !== undefined) {
      for (const room of session.rooms) session.say({ room }, `has quit: ${options.reason}`, { type: "action" });
    }
    if (session && session.unsent > 0 && session.online) {
      this.status(`waiting for ${session.unsent} messages to be stored…`);
      await session.drain({ timeoutMs: QUIT_DRAIN_MS }).catch(() => {});
    }
    const unsent = session?.unsent ?? 0;
    if (unsent > 0 && options.ask) {
      const answer = await this.screen.ask(`${unsent} unsent line${unsent === 1 ? "" : "s"}; quit anyway? y/N `);
      // Ctrl-C at the question leaves too.
      if (answer !== undefined && !isYes(answer)) {
        this.#quitting = false;
        return;
      }
    }
    for (const item of session?.pending() ?? []) {
      this.view.onEvent({ kind: "outbox", item: { ...item, state: "failed", reason: "you quit before it was sent" } });
    }
    await session?.close("quit");
    this.end(CLIENT_EXIT.ok);
  }

  end(code: number): void {
    this.view.stop();
    this.screen.end();
    this.#done(code);
  }

  async #connect(nick: string, home: Home): Promise<ChatSession> {
    const config = this.#config;
    const connect = this.#options.connect ?? connectSession(this.#options.dial!);
    return await connect({
      nick,
      home,
      address: `${config.host}:${config.port}`,
      tls: config.tls,
      onEvent: this.onEvent,
      iterations: config.iterations,
      minIterations: config.minIterations,
      remember: config.remember,
      reconnect: this.#options.reconnect,
    });
  }

  /** Opens the home, asking for the identity passphrase when the key is protected. */
  async #openHome(): Promise<Home | undefined> {
    if (this.#options.home) return this.#options.home;
    try {
      return await Home.open(this.#options.homeDir!, {
        passphrase: () => this.screen.ask("passphrase of your identity key: ", { secret: true }),
      });
    } catch (err) {
      if (!(err instanceof HomeError)) throw err;
      this.warn(err.message);
      this.end(CLIENT_EXIT.usage);
      return undefined;
    }
  }

  /** Opens the home, asks for the nick when needed, connects, joins the rooms and starts taking lines. */
  async start(): Promise<void> {
    const config = this.#config;
    const home = await this.#openHome();
    if (!home) return;
    if (home.created) this.status(`made your identity key in ${home.dir}`);
    let nick = config.nick;
    for (let tries = 0; this.session === undefined; tries++) {
      while (nick === undefined) {
        const answer = await this.screen.ask("nick: ");
        if (answer === undefined) return this.end(CLIENT_EXIT.ok);
        try {
          nick = validateNick(answer.trim());
        } catch (err) {
          this.warn((err as Error).message);
        }
      }
      try {
        this.status(`connecting to ${config.host}:${config.port}${config.tls ? " with TLS" : ""}…`);
        this.session = await this.#connect(nick, home);
      } catch (err) {
        if (!(err instanceof SessionError)) throw err;
        this.warn(err.message);
        if (err.kind !== "nick" || tries >= 2 || err.code === undefined) return this.end(EXIT_OF_CLOSE[err.kind]);
        nick = undefined;
      }
    }
    const session = this.session;
    this.view.nick = session.nick;
    this.screen.maxLineBytes = session.maxBody;
    this.status(`connected as ${session.nick}; type /help for commands`);
    // Every --room is joined; the first is where typing starts, and a first room refused ends the program.
    for (const [i, room] of config.rooms.entries()) {
      const joined = await this.join(room, false);
      if (i > 0 || joined === "joined") continue;
      // Declining to create the room is the user's choice, not a failure.
      await session.close(joined === "cancelled" ? "cancelled" : "denied");
      const code = joined === "cancelled"
        ? CLIENT_EXIT.ok
        : joined === "changed"
        ? CLIENT_EXIT.changed
        : CLIENT_EXIT.denied;
      return this.end(code);
    }
    const first = session.joinedRoom(config.room);
    if (first !== undefined && this.view.currentKey !== conversationKey("room", first)) {
      this.view.switchTo(conversationKey("room", first));
    }
    this.view.startPrompt();
  }
}

/**
 * Runs the interactive chat until the user quits, or a refusal that retrying cannot fix ends it. A lost connection
 * is retried for as long as the program runs.
 *
 * @example
 * ```ts
 * const code = await runTerminal(config, { dial: dialServer({ host: "127.0.0.1", port: 5000 }), homeDir });
 * ```
 * @param config the parsed flags
 * @param options how to reach the server, a preset passphrase, and (for tests) the terminal's streams
 * @returns the exit code
 */
export async function runTerminal(config: ClientConfig, options: TerminalOptions): Promise<number> {
  const chat = new Chat(config, options);
  const limit = () => chat.session?.maxBody;
  chat.screen.listen({
    line: (line) => chat.enqueue(line),
    refused: (_line, bytes) =>
      chat.warn(`not sent: the line is ${bytes} bytes; the limit is ${limit()} (it is still there to shorten)`),
    over: (bytes) => chat.warn(`the line is ${bytes} bytes; the limit is ${limit()}: shorten it to send it`),
    interrupt: () => void chat.quit({ ask: true }),
    end: ({ closed }) => void chat.quit({ ask: !closed }),
    switchTo: (index) => chat.view.switchToIndex(index),
    cycle: (step) => chat.view.cycle(step),
    complete: (text, cursor) => chat.complete(text, cursor),
  });
  // `kill PID` leaves like /quit, without a question: unstored lines get their moment, the server a goodbye.
  const onTerminate = () => void chat.quit({ ask: false });
  try {
    Deno.addSignalListener("SIGTERM", onTerminate);
  } catch {
    // not available on this platform
  }
  chat.start().catch((err) => {
    chat.warn(`internal error: ${(err as Error).message}`);
    chat.end(CLIENT_EXIT.internal);
  });
  try {
    return await chat.finished;
  } finally {
    try {
      Deno.removeSignalListener("SIGTERM", onTerminate);
    } catch {
      // never added
    }
  }
}
