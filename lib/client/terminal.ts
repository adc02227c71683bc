/**
 * The interactive chat on a terminal, on top of screen.ts (every touch of the terminal) and session.ts (the
 * conversation): the nick and passphrase questions, the slash commands of commands.ts, one ordered queue of typed
 * lines, the rendering of events, this client's lines pending until stored (in the footer), the connection state
 * while offline, and leaving (asking first when lines are unsent).
 *
 * @module
 */

import { MAX_BODY_BYTES } from "../envelope.ts";
import { foldName, validateNick } from "../names.ts";
import { CLIENT_EXIT, type ClientConfig, EXIT_OF_CLOSE } from "./config.ts";
import { type CommandContext, runLine } from "./commands.ts";
import { Home, HomeError } from "./home.ts";
import type { Dial } from "./link.ts";
import type { OutboxItem } from "./outbox.ts";
import { generatePassphrase, isWeakPassphrase, WEAK_PASSPHRASE_CHARS } from "./passphrase.ts";
import { displayNick, formatMessage, formatStatus, type MessageLine, noticeOf, shownNick } from "./render.ts";
import { Screen, type TerminalInput, type TerminalOutput } from "./screen.ts";
import {
  JoinError,
  type JoinHooks,
  type ReconnectPolicy,
  Session,
  SessionError,
  type SessionEvent,
} from "./session.ts";

/** Wrong passphrases allowed at one prompt before giving up. */
const PASSPHRASE_TRIES = 3;
/** Longest wait for unstored messages when quitting while connected. */
const QUIT_DRAIN_MS = 5_000;
/** This client's pending lines shown in the footer; more are counted in one row. */
const FOOTER_PENDING = 5;

/** Where the interactive chat runs, and how it reaches the server. */
export interface TerminalOptions {
  /** Opens the connection (link.ts `dialServer`). */
  dial: Dial;
  /** The home's directory ($AESCHAT_HOME or its default). */
  homeDir: string;
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
}

/** One interactive session on the terminal. */
class Chat {
  readonly screen: Screen;
  #config: ClientConfig;
  #options: TerminalOptions;
  #colour: boolean;
  session: Session | undefined;
  /** The room typed lines go to. */
  #current: string | undefined;
  #inHistory = false;
  /** Recipients of this client's direct messages stored, by id, until the server says they were delivered. */
  #sentTo = new Map<string, string>();
  /** This client's lines not yet stored, by id, oldest first. */
  #pending = new Map<string, OutboxItem>();
  #offline: { retryAt: number; reason: string } | undefined;
  #countdown: ReturnType<typeof setInterval> | undefined;
  /** Typed lines run one after another, in the order typed. */
  #lines: Promise<void> = Promise.resolve();
  #quitting = false;
  #done!: (code: number) => void;
  readonly finished: Promise<number>;
  #preset: string | undefined;
  #commands: CommandContext;

  constructor(config: ClientConfig, options: TerminalOptions) {
    const session = () => this.session!;
    const current = () => this.#current;
    this.#commands = {
      get session() {
        return session();
      },
      get room() {
        return current();
      },
      status: (text) => this.status(text),
      warn: (text) => this.warn(text),
      ask: (question) => this.screen.ask(question),
      say: (text, { action, type }) => {
        if (this.#current === undefined) throw new JoinError("no_room", "join a room first: /join ROOM");
        this.session!.say(text, { room: this.#current, action, type });
        return Promise.resolve();
      },
      join: async (room, { generate, remember }) => {
        await this.join(room, { generate, remember });
        this.prompt();
      },
      part: async (room) => {
        await this.session!.part(room);
        if (this.#current !== undefined && foldName(this.#current) === foldName(room)) {
          this.#current = this.session!.rooms.at(-1);
        }
        this.prompt();
      },
      quit: () => this.quit({ ask: true }),
    };
    this.#config = config;
    this.#options = options;
    this.#preset = options.passphrase;
    this.#colour = options.colour ?? (Deno.stdout.isTerminal() && !Deno.noColor);
    this.screen = new Screen({ input: options.input, output: options.output, maxLineBytes: MAX_BODY_BYTES });
    this.finished = new Promise((resolve) => this.#done = resolve);
  }

  status(text: string): void {
    this.#endHistory();
    this.screen.print(formatStatus(text, { colour: this.#colour, width: this.screen.columns }));
  }

  warn(text: string): void {
    this.#endHistory();
    this.screen.print(formatStatus(text, { colour: this.#colour, warning: true, width: this.screen.columns }));
  }

  #show(message: MessageLine & { room: string | null }): void {
    if (message.history && !this.#inHistory) {
      this.#inHistory = true;
      this.screen.print(formatStatus("history", { colour: this.#colour }));
    } else if (!message.history) {
      this.#endHistory();
    }
    // Messages of another room than the one typed into carry its name.
    const room = message.room !== null && message.room !== this.#current ? message.room : undefined;
    this.screen.print(formatMessage(message, { colour: this.#colour, width: this.screen.columns, room }));
  }

  #endHistory(): void {
    if (!this.#inHistory) return;
    this.#inHistory = false;
    this.screen.print(formatStatus("end of history", { colour: this.#colour }));
  }

  /** This client's own line, as a message of the current nick. */
  #own(item: OutboxItem): MessageLine {
    const from = this.session?.nick ?? "";
    const { ts, text } = item;
    const body = text.type === "invite" ? `(an invitation to ${JSON.parse(text.body).room})` : text.body;
    return { from, ts, type: text.type === "invite" ? "text" : text.type, text: body, history: false, to: item.to };
  }

  prompt(): void {
    const room = this.#current;
    this.#endHistory();
    this.screen.prompt(room ? `#${room}> ` : "> ");
  }

  /** The footer: the pending lines (the last few), and the connection state while offline. */
  #updateFooter(): void {
    const rows: string[] = [];
    const pending = [...this.#pending.values()];
    const hidden = pending.length - FOOTER_PENDING;
    if (hidden > 0) rows.push(formatStatus(`… and ${hidden} more unsent`, { colour: this.#colour }));
    for (const item of pending.slice(Math.max(0, hidden))) {
      rows.push(formatMessage(this.#own(item), { colour: this.#colour, pending: true }));
    }
    if (this.#offline) {
      const left = Math.ceil((this.#offline.retryAt - Date.now()) / 1000);
      const state = left > 0 ? `offline, retrying in ${left} s` : "offline, reconnecting…";
      const unsent = this.session?.unsent ?? 0;
      rows.push(formatStatus(`${state}; ${unsent} unsent`, { colour: this.#colour, warning: true }));
    }
    this.screen.setFooter(rows);
  }

  onEvent = (event: SessionEvent): void => {
    switch (event.kind) {
      case "message":
        return this.#show(event.message);
      case "direct":
        if (event.message.history) return;
        return this.#show(event.message);
      case "invitation": {
        const i = event.invitation;
        if (i.history) return;
        const line = `${shownNick(i.from, i.trust)} invites you to #${i.room}: /accept ${i.room} joins it`;
        return i.trust === "changed" ? this.warn(`[key changed] ${line}`) : this.status(line);
      }
      case "delivered": {
        // The server says it handed one of our direct messages over (not a receipt signed by the recipient).
        const to = this.#sentTo.get(event.id);
        this.#sentTo.delete(event.id);
        return to === undefined ? undefined : this.status(`delivered to ${displayNick(to)}`);
      }
      case "joined":
      case "parted":
        return;
      case "older":
        if (event.messages.length === 0) return;
        this.status(`${event.messages.length} older messages${event.more ? " (/history for more)" : ""}`);
        for (const m of event.messages) {
          this.screen.print(formatMessage(m, { colour: this.#colour, width: this.screen.columns }));
        }
        return this.status("end of older messages");
      case "presence": {
        const who = shownNick(event.nick, event.trust);
        if (event.event === "join") return this.status(`${who} joined #${event.room}`);
        if (event.event === "leave") return this.status(`${who} left #${event.room}`);
        return this.status(`${displayNick(event.old ?? "")} is now known as ${who}`);
      }
      case "nick":
        return this.status(`you are now known as ${displayNick(event.new)}`);
      case "outbox":
        return this.#onOutbox(event.item);
      case "offline":
        // Said once, and again only when the reason changes (say, the server is back but refuses the nick).
        if (event.attempt === 1) this.status(`connection lost (${event.reason}); reconnecting…`);
        else if (event.reason !== this.#offline?.reason) this.status(`still offline: ${event.reason}`);
        this.#offline = { retryAt: Date.now() + event.retryInMs, reason: event.reason };
        this.#countdown ??= setInterval(() => this.#updateFooter(), 1_000);
        return this.#updateFooter();
      case "reconnected":
        this.#offline = undefined;
        clearInterval(this.#countdown);
        this.#countdown = undefined;
        this.#updateFooter();
        this.status(`reconnected: ${event.missed} missed messages fetched, ${event.resent} resent`);
        return this.prompt();
      case "closed":
        // A refusal that retrying cannot fix (wrong passphrase on rejoining, a nick the server will never take).
        if (this.#quitting) return;
        this.#offline = undefined;
        this.warn(`${event.error.message}: stopped reconnecting`);
        return this.end(EXIT_OF_CLOSE[event.error.kind]);
      default: {
        const notice = noticeOf(event);
        if (notice) return notice.warning ? this.warn(notice.text) : this.status(notice.text);
      }
    }
  };

  #onOutbox(item: OutboxItem): void {
    if (item.to !== undefined && item.state === "acked") {
      this.#sentTo.set(item.id, item.to);
      if (this.#sentTo.size > 1000) this.#sentTo.delete(this.#sentTo.keys().next().value!);
    }
    if (item.state === "queued" || item.state === "sent") {
      this.#pending.set(item.id, item);
    } else {
      this.#pending.delete(item.id);
      this.#endHistory();
      const failed = item.state === "failed" ? item.reason ?? "given up" : undefined;
      this.screen.print(formatMessage(this.#own(item), { colour: this.#colour, width: this.screen.columns, failed }));
    }
    this.#updateFooter();
  }

  hooks(generate: boolean): JoinHooks {
    return {
      passphrase: async (room, { creating }) => {
        if (creating) return await this.#newPassphrase(room, generate);
        if (generate) this.status(`#${room} already exists: --generate only applies when creating a room`);
        if (this.#preset !== undefined) {
          const p = this.#preset;
          this.#preset = undefined;
          return p;
        }
        return await this.screen.ask(`passphrase for #${room}: `, { secret: true });
      },
      deriving: (_room, { iterations }) => {
        const what = `deriving room key (${iterations} iterations)`;
        const stop = this.screen.spinner(`${what}…`);
        return () => this.status(`${what}: done in ${stop().toFixed(1)} s`);
      },
    };
  }

  async #newPassphrase(room: string, generate: boolean): Promise<string | undefined> {
    this.status(`#${room} does not exist yet: creating it`);
    const given = this.#preset;
    this.#preset = undefined;
    let passphrase = generate ? "" : (given ?? await this.screen.ask(
      `choose a passphrase for #${room} (empty: generate a strong one): `,
      { secret: true },
    ));
    if (passphrase === undefined) return undefined;
    if (passphrase === "") {
      passphrase = generatePassphrase();
      this.status(`passphrase for #${room}: ${passphrase}`);
      this.status("share it with your team over a channel you trust; it is not shown again");
      return passphrase;
    }
    if (isWeakPassphrase(passphrase)) {
      this.warn(
        `this passphrase is shorter than ${WEAK_PASSPHRASE_CHARS} characters: anyone who guesses it reads #${room}`,
      );
      const answer = await this.screen.ask("create the room with it anyway? [y/N] ");
      if (!/^y(es)?$/i.test(answer?.trim() ?? "")) return undefined;
    }
    if (given === undefined) {
      const again = await this.screen.ask("repeat the passphrase: ", { secret: true });
      if (again !== passphrase) {
        this.warn("the passphrases differ");
        return undefined;
      }
    }
    return passphrase;
  }

  async join(
    room: string,
    options: { generate: boolean; remember?: boolean },
  ): Promise<"joined" | "cancelled" | "failed" | "changed"> {
    for (let attempt = 1;; attempt++) {
      const fromPreset = this.#preset !== undefined;
      try {
        const joined = await this.session!.join(room, this.hooks(options.generate), { remember: options.remember });
        this.#current = joined.room;
        if (joined.already) {
          if (options.generate) this.status(`#${joined.room} already exists: --generate was ignored`);
          this.status(`now typing into #${joined.room}`);
          return "joined";
        }
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
        if (err.code === "changed" || err.code === "weak") return "changed";
        if (err.code !== "access_denied" || fromPreset || attempt >= PASSPHRASE_TRIES) return "failed";
      }
    }
  }

  /** Runs typed lines one after another: a line typed after /nick is sealed under the new nick. */
  enqueue(line: string): void {
    this.#lines = this.#lines.then(() => runLine(this.#commands, line)).catch((err) =>
      this.warn(`internal error: ${(err as Error).message}`)
    );
  }

  /**
   * Leaves: waits a moment for lines on their way to be stored, asks before dropping unsent ones (when it can ask),
   * says goodbye and ends.
   */
  async quit(options: { ask: boolean }): Promise<void> {
    if (this.#quitting) return;
    this.#quitting = true;
    const session = this.session;
    if (session && session.unsent > 0 && session.online) {
      this.status(`waiting for ${session.unsent} messages to be stored…`);
      await session.drain({ timeoutMs: QUIT_DRAIN_MS }).catch(() => {});
    }
    const unsent = session?.unsent ?? 0;
    if (unsent > 0 && options.ask) {
      const answer = await this.screen.ask(`${unsent} unsent line${unsent === 1 ? "" : "s"}; quit anyway? y/N `);
      // Ctrl-C at the question leaves too.
      if (answer !== undefined && !/^y(es)?$/i.test(answer.trim())) {
        this.#quitting = false;
        return this.prompt();
      }
    }
    for (const item of session?.pending() ?? []) {
      this.screen.print(formatMessage(this.#own(item), {
        colour: this.#colour,
        width: this.screen.columns,
        failed: "you quit before it was sent",
      }));
    }
    await session?.close("quit");
    this.end(CLIENT_EXIT.ok);
  }

  end(code: number): void {
    clearInterval(this.#countdown);
    this.#pending.clear();
    this.#offline = undefined;
    this.screen.setFooter([]);
    this.screen.end();
    this.#done(code);
  }

  /** Opens the home, asking for the identity passphrase when the key is protected. */
  async #openHome(): Promise<Home | undefined> {
    try {
      return await Home.open(this.#options.homeDir, {
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
        this.session = await Session.connect(this.#options.dial, {
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
      } catch (err) {
        if (!(err instanceof SessionError)) throw err;
        this.warn(err.message);
        if (err.kind !== "nick" || tries >= 2 || err.code === undefined) return this.end(EXIT_OF_CLOSE[err.kind]);
        nick = undefined;
      }
    }
    const session = this.session;
    this.screen.maxLineBytes = Math.min(MAX_BODY_BYTES, session.limits?.max_body ?? MAX_BODY_BYTES);
    this.status(`connected as ${session.nick}; type /help for commands`);
    for (const [i, room] of config.rooms.entries()) {
      const joined = await this.join(room, { generate: false });
      if (i === 0 && joined !== "joined") {
        // Declining to create the room is the user's choice, not a failure.
        await session.close(joined === "cancelled" ? "cancelled" : "denied");
        const code = joined === "cancelled"
          ? CLIENT_EXIT.ok
          : joined === "changed"
          ? CLIENT_EXIT.changed
          : CLIENT_EXIT.denied;
        return this.end(code);
      }
    }
    this.#current = session.rooms.find((r) => foldName(r) === foldName(config.room)) ?? this.#current;
    this.prompt();
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
  chat.screen.listen({
    line: (line) => chat.enqueue(line),
    refused: (_line, bytes) =>
      chat.warn(`not sent: the line is ${bytes} bytes; the limit is ${maxBytes(chat)} (it is still there to shorten)`),
    over: (bytes) => chat.warn(`the line is ${bytes} bytes; the limit is ${maxBytes(chat)}: shorten it to send it`),
    interrupt: () => void chat.quit({ ask: true }),
    end: ({ closed }) => void chat.quit({ ask: !closed }),
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

function maxBytes(chat: Chat): number {
  return Math.min(MAX_BODY_BYTES, chat.session?.limits?.max_body ?? MAX_BODY_BYTES);
}
