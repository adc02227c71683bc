/**
 * The interactive chat on a terminal: line editing and input history from node:readline, incoming messages
 * printed above the prompt with the half-typed line redrawn, passphrase prompts that do not echo, and the
 * slash commands of commands.ts.
 *
 * @module
 */

import process from "node:process";
import readline from "node:readline";
import { validateNick } from "../names.ts";
import { CLIENT_EXIT, type ClientConfig, EXIT_OF_CLOSE } from "./config.ts";
import { type CommandContext, runLine } from "./commands.ts";
import { generatePassphrase, isWeakPassphrase, WEAK_PASSPHRASE_CHARS } from "./passphrase.ts";
import { formatMessage, formatStatus, sanitize } from "./render.ts";
import { JoinError, type JoinHooks, Session, SessionError, type SessionEvent, type ShownMessage } from "./session.ts";

/** Wrong passphrases allowed at one prompt before giving up. */
const PASSPHRASE_TRIES = 3;
/** Longest wait for unacknowledged messages when quitting. */
const QUIT_DRAIN_MS = 5_000;
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** The parts of node:readline's Interface used here that its types leave out (stable since Node 10). */
type ReadlineWithInternals = readline.Interface & {
  output: NodeJS.WritableStream;
  history: string[];
  prevRows?: number;
};

/** Where readline's drawing goes while a secret is typed: nowhere, so the screen stays as the question left it. */
const NO_OUTPUT = { write: () => true, columns: 80, isTTY: true } as unknown as NodeJS.WritableStream;

/**
 * The editing state node:readline keeps between lines besides the history (the kill ring Ctrl-Y yanks from, and the
 * undo and redo stacks of Ctrl-_), reached by symbol description because they are private. A secret typed at a
 * prompt must not be recoverable from them at the next prompt.
 */
function editingMemory(rl: readline.Interface): unknown[][] {
  const names = ["kKillRing", "kUndoStack", "kRedoStack"];
  return Object.getOwnPropertySymbols(rl)
    .filter((s) => names.includes(s.description ?? ""))
    .map((s) => (rl as unknown as Record<symbol, unknown>)[s])
    .filter((v): v is unknown[] => Array.isArray(v));
}

/** One interactive terminal: owns stdin/stdout while it runs. */
class Terminal {
  #rl: ReadlineWithInternals;
  #colour: boolean;
  #prompting = false;
  #muted = false;
  #held: string[] = [];
  #inHistory = false;
  #asking = false;
  #done!: (code: number) => void;
  readonly finished: Promise<number>;

  constructor() {
    this.#colour = Deno.stdout.isTerminal() && !Deno.noColor;
    this.#rl = readline.createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: true,
      historySize: 500,
    }) as ReadlineWithInternals;
    this.finished = new Promise((resolve) => this.#done = resolve);
  }

  get rl(): ReadlineWithInternals {
    return this.#rl;
  }

  /** Whether lines are coloured. */
  get colour(): boolean {
    return this.#colour;
  }

  /** Whether a question is waiting for its answer (Ctrl-C then cancels the question, not the program). */
  get asking(): boolean {
    return this.#asking;
  }

  /** Prints a line above the prompt, keeping the half-typed input intact. */
  print(line: string): void {
    if (this.#muted) {
      this.#held.push(line);
      return;
    }
    if (!this.#prompting && !this.#asking) {
      process.stdout.write(line + "\n");
      return;
    }
    // The prompt and the half-typed line (or a question and its answer so far) may wrap over several rows, and the
    // cursor may be on any of them: clear from the first, print, and let readline redraw them below.
    readline.moveCursor(process.stdout, 0, -this.#rl.getCursorPos().rows);
    readline.cursorTo(process.stdout, 0);
    readline.clearScreenDown(process.stdout);
    process.stdout.write(line + "\n");
    this.#rl.prevRows = 0;
    this.#rl.prompt(true);
  }

  status(text: string): void {
    this.#endHistory();
    this.print(formatStatus(text, { colour: this.#colour }));
  }

  warn(text: string): void {
    this.#endHistory();
    this.print(formatStatus(text, { colour: this.#colour, warning: true }));
  }

  message(message: ShownMessage): void {
    if (message.history && !this.#inHistory) {
      this.#inHistory = true;
      this.print(formatStatus("history", { colour: this.#colour }));
    } else if (!message.history) {
      this.#endHistory();
    }
    this.print(formatMessage(message, { colour: this.#colour }));
  }

  #endHistory(): void {
    if (!this.#inHistory) return;
    this.#inHistory = false;
    this.print(formatStatus("end of history", { colour: this.#colour }));
  }

  /**
   * Removes the line the user just entered (prompt and text, over as many rows as it wrapped), so a sent
   * message appears once, formatted like everyone else's.
   *
   * @param line the text entered
   */
  eraseEntered(line: string): void {
    if (!this.#prompting || !process.stdout.isTTY) return;
    const columns = process.stdout.columns || 80;
    const width = [...(this.#rl.getPrompt() + line)].length;
    const rows = Math.max(1, Math.ceil(width / columns));
    readline.moveCursor(process.stdout, 0, -rows);
    readline.cursorTo(process.stdout, 0);
    readline.clearScreenDown(process.stdout);
  }

  /** Shows the prompt and starts taking lines. */
  prompt(room: string | undefined): void {
    this.#endHistory();
    this.#rl.setPrompt(room ? `#${room}> ` : "> ");
    this.#prompting = true;
    this.#rl.prompt(true);
  }

  /**
   * Asks a question on its own line; Ctrl-C cancels it (undefined).
   *
   * @param query the question
   * @param options.secret do not echo the answer, and keep it out of the input history
   */
  ask(query: string, options: { secret?: boolean } = {}): Promise<string | undefined> {
    const controller = new AbortController();
    const wasPrompting = this.#prompting;
    this.#prompting = false;
    const onInterrupt = () => controller.abort();
    this.#rl.once("SIGINT", onInterrupt);
    this.#asking = true;
    // Answers (nicks, y/N, passphrases) are not chat input: Up must never bring them back.
    const history = [...this.#rl.history];
    const memory = editingMemory(this.#rl).map((stack) => [...stack]);
    const output = this.#rl.output;
    return new Promise<string | undefined>((resolve) => {
      const finish = (answer: string | undefined) => {
        if (!this.#asking) return;
        this.#asking = false;
        this.#rl.off("SIGINT", onInterrupt);
        this.#rl.history.splice(0, Infinity, ...history);
        if (options.secret) {
          editingMemory(this.#rl).forEach((stack, i) => stack.splice(0, Infinity, ...(memory[i] ?? [])));
          this.#rl.output = output;
          this.#muted = false;
          process.stdout.write("\n");
          const held = this.#held;
          this.#held = [];
          for (const line of held) this.print(line);
        }
        this.#prompting = wasPrompting;
        resolve(answer);
      };
      this.#rl.question(query, { signal: controller.signal }, (answer) => finish(answer));
      // After question(), so readline has dropped the question (into NO_OUTPUT for a secret) before finish runs.
      controller.signal.addEventListener("abort", () => finish(undefined), { once: true });
      // question() has drawn the query by now. From here on readline draws nothing at all, not even the cursor
      // moves of a redraw (Ctrl-U, Backspace), so neither the secret nor its length shows.
      if (options.secret) {
        this.#muted = true;
        this.#rl.output = NO_OUTPUT;
      }
    });
  }

  /** A spinner on the current line until the returned function is called. */
  spinner(text: string): () => void {
    let i = 0;
    const draw = () => process.stdout.write(`\r${SPINNER[i++ % SPINNER.length]} ${text}`);
    draw();
    const timer = setInterval(draw, 100);
    const started = performance.now();
    return () => {
      clearInterval(timer);
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
      this.status(`${text.replace(/…$/, "")}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    };
  }

  /** Stops reading; the screen ends on a fresh line for the shell, without a stale prompt. */
  end(code: number): void {
    if (this.#prompting && process.stdout.isTTY) {
      // Quitting with Ctrl-C or Ctrl-D leaves the cursor after the prompt: the shell would print its own there.
      readline.moveCursor(process.stdout, 0, -this.#rl.getCursorPos().rows);
      readline.cursorTo(process.stdout, 0);
      readline.clearScreenDown(process.stdout);
    } else if (this.#asking && process.stdout.isTTY) {
      process.stdout.write("\n");
    }
    this.#prompting = false;
    this.#rl.close();
    this.#done(code);
  }
}

/**
 * Runs the interactive chat until the user quits or the connection is lost for good.
 *
 * @example
 * ```ts
 * const code = await runTerminal(config, { passphrase: Deno.env.get("AESCHAT_PASSPHRASE") });
 * ```
 * @param config the parsed flags
 * @param options.passphrase a passphrase given by environment or file, for the first room
 * @param options.caCerts extra certificates to trust
 * @returns the exit code
 */
export async function runTerminal(
  config: ClientConfig,
  options: { passphrase?: string; caCerts?: string[] },
): Promise<number> {
  const term = new Terminal();
  let session: Session | undefined;
  let quitting = false;
  let preset = options.passphrase;

  const onEvent = (event: SessionEvent) => {
    switch (event.kind) {
      case "message":
        return term.message(event.message);
      case "older":
        if (event.messages.length === 0) return;
        term.status(`${event.messages.length} older messages${event.more ? " (/history for more)" : ""}`);
        for (const m of event.messages) term.print(formatMessage(m, { colour: term.colour }));
        return term.status("end of older messages");
      case "forged":
        return term.warn(
          `warning: a message claiming to be from ${event.from} (seq ${event.seq}) failed authentication: not shown`,
        );
      case "presence":
        if (event.event === "join") return term.status(`${event.nick} joined #${event.room}`);
        if (event.event === "leave") return term.status(`${event.nick} left #${event.room}`);
        return term.status(`${event.old} is now known as ${event.nick}`);
      case "nick":
        return term.status(`you are now known as ${event.new}`);
      case "unsent":
        return term.warn(`a message was not stored: ${event.reason}`);
      case "status":
        return term.status(event.text);
      case "reconnected":
        term.status(`reconnected: ${event.missed} missed messages fetched, ${event.resent} resent`);
        return term.prompt(session?.room);
      case "closed":
        if (quitting) return;
        term.warn(event.error.message);
        return term.end(EXIT_OF_CLOSE[event.error.kind]);
    }
  };

  const hooks = (generate: boolean): JoinHooks => ({
    passphrase: async (room, { creating }) => {
      if (creating) {
        term.status(`#${room} does not exist yet: creating it`);
        let passphrase = generate ? "" : (preset ?? await term.ask(
          `choose a passphrase for #${room} (empty: generate a strong one): `,
          { secret: true },
        ));
        preset = undefined;
        if (passphrase === undefined) return undefined;
        if (passphrase === "") {
          passphrase = generatePassphrase();
          term.status(`passphrase for #${room}: ${passphrase}`);
          term.status("share it with your team over a channel you trust; it is not shown again");
          return passphrase;
        }
        if (isWeakPassphrase(passphrase)) {
          term.warn(
            `this passphrase is shorter than ${WEAK_PASSPHRASE_CHARS} characters: anyone who guesses it reads #${room}`,
          );
          const answer = await term.ask("create the room with it anyway? [y/N] ");
          if (!/^y(es)?$/i.test(answer?.trim() ?? "")) return undefined;
        }
        if (!options.passphrase || room !== config.room) {
          const again = await term.ask("repeat the passphrase: ", { secret: true });
          if (again !== passphrase) {
            term.warn("the passphrases differ");
            return undefined;
          }
        }
        return passphrase;
      }
      if (generate) term.status(`#${room} already exists: --generate only applies when creating a room`);
      if (preset !== undefined) {
        const p = preset;
        preset = undefined;
        return p;
      }
      return await term.ask(`passphrase for #${room}: `, { secret: true });
    },
    deriving: (_room, { iterations }) => term.spinner(`deriving room key (${iterations} iterations)…`),
  });

  const join = async (room: string, generate: boolean): Promise<"joined" | "cancelled" | "failed"> => {
    for (let attempt = 1;; attempt++) {
      const fromPreset = preset !== undefined;
      try {
        const joined = await session!.join(room, hooks(generate));
        term.status(
          `${joined.created ? "created" : "joined"} #${room}: ${joined.members.map(sanitize).join(", ")} ${
            joined.members.length === 1 ? "is" : "are"
          } here`,
        );
        return "joined";
      } catch (err) {
        if (!(err instanceof JoinError)) throw err;
        if (err.code === "cancelled") {
          term.status(`not joined #${room}`);
          return "cancelled";
        }
        term.warn(err.code === "access_denied" ? `wrong passphrase for #${room}` : err.message);
        if (err.code !== "access_denied" || fromPreset || attempt >= PASSPHRASE_TRIES) return "failed";
      }
    }
  };

  const quit = async (): Promise<void> => {
    if (quitting) return;
    quitting = true;
    if (session && session.unacked > 0) {
      term.status(`waiting for ${session.unacked} messages to be stored…`);
      await session.drain({ timeoutMs: QUIT_DRAIN_MS }).catch((err) => term.warn(err.message));
    }
    await session?.close("quit");
    term.end(CLIENT_EXIT.ok);
  };

  const ctx: CommandContext = {
    get session() {
      return session!;
    },
    status: (text) => term.status(text),
    warn: (text) => term.warn(text),
    say: async (text, { action }) => {
      const message = await session!.send(text, { action });
      term.message(message);
    },
    join: async (room, { generate }) => {
      await join(room, generate);
      term.prompt(session!.room);
    },
    quit,
  };

  term.rl.on("SIGINT", () => {
    if (!term.asking) void quit();
  });
  term.rl.on("close", () => void quit());
  // `kill PID` leaves like /quit: unacknowledged messages get their chance to be stored, the server a goodbye.
  const onTerminate = () => void quit();
  try {
    Deno.addSignalListener("SIGTERM", onTerminate);
  } catch {
    // not available on this platform
  }

  const start = async (): Promise<void> => {
    let nick = config.nick;
    for (let tries = 0; session === undefined; tries++) {
      while (nick === undefined) {
        const answer = await term.ask("nick: ");
        if (answer === undefined) return term.end(CLIENT_EXIT.ok);
        try {
          nick = validateNick(answer.trim());
        } catch (err) {
          term.warn((err as Error).message);
        }
      }
      try {
        term.status(`connecting to ${config.host}:${config.port}${config.tls ? " with TLS" : ""}…`);
        session = await Session.connect(
          { host: config.host, port: config.port, tls: config.tls, caCerts: options.caCerts },
          { nick, onEvent, iterations: config.iterations, reconnectForMs: config.reconnectFor * 1000 },
        );
      } catch (err) {
        if (!(err instanceof SessionError)) throw err;
        term.warn(err.message);
        if (err.kind !== "nick" || tries >= 2 || err.code === undefined) return term.end(EXIT_OF_CLOSE[err.kind]);
        nick = undefined;
      }
    }
    term.status(`connected as ${session.nick}; type /help for commands`);
    const first = await join(config.room, false);
    if (first !== "joined") {
      // Declining to create the room is the user's choice, not a failure.
      await session.close(first);
      return term.end(first === "cancelled" ? CLIENT_EXIT.ok : CLIENT_EXIT.denied);
    }
    term.rl.on("line", (line) => {
      if (line.trim() !== "" && (!line.startsWith("/") || line.startsWith("//"))) term.eraseEntered(line);
      runLine(ctx, line).catch((err) => term.warn(`internal error: ${(err as Error).message}`)).finally(() => {
        if (!quitting) term.prompt(session?.room);
      });
    });
    term.prompt(session.room);
  };
  start().catch((err) => {
    term.warn(`internal error: ${(err as Error).message}`);
    term.end(CLIENT_EXIT.internal);
  });
  try {
    return await term.finished;
  } finally {
    try {
      Deno.removeSignalListener("SIGTERM", onTerminate);
    } catch {
      // never added
    }
  }
}
