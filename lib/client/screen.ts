/**
 * Every touch of node:readline and the terminal: the prompt and line editing, pastes inserted whole, printing above
 * the prompt, a footer of rows kept just above it (lines waiting to be stored, the connection state, a spinner),
 * questions whose answers may be hidden, and leaving the screen clean.
 *
 * The screen from top to bottom: what was printed; the footer; the prompt (or a question) with the line being
 * typed. The cursor is in the prompt's rows. Printing moves up over the prompt's rows and the footer, clears to
 * the end of the screen, writes the new rows and the footer, and lets readline draw the prompt again: all in one
 * write, so nothing flickers or is seen half drawn.
 *
 * A paste arrives as one burst of input. node:readline handles input one key at a time and measures the whole line
 * after every key, which makes a long paste quadratic (17000 characters: over a minute). Plain text (no control
 * keys or escape sequences) that arrives in one read is therefore handed to readline whole with `write`, which
 * inserts it in one step: constant work per character. Line breaks in it still end lines, in order.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import process from "node:process";
import readline from "node:readline";
import { utf8Length } from "../names.ts";
import { fitRow } from "./render.ts";

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/** Input history kept for Up and Down. */
const HISTORY_SIZE = 500;
/** Plain text: no control characters but tab and line breaks, no escape sequences. */
// deno-lint-ignore no-control-regex
const PLAIN_TEXT = /^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$/;
/** A read that ends inside an escape sequence: the next read must finish it key by key. */
// deno-lint-ignore no-control-regex
const OPEN_ESCAPE = /\x1b(\[[0-9;?]*|O)?$/;

/** The terminal's input as readline needs it (process.stdin in a real terminal). */
export interface TerminalInput {
  on(event: "data", listener: (chunk: Uint8Array | string) => void): unknown;
  on(event: "end", listener: () => void): unknown;
  setRawMode?(mode: boolean): unknown;
  readonly isRaw?: boolean;
  resume(): unknown;
  pause(): unknown;
}

/** The terminal's output (process.stdout in a real terminal). */
export interface TerminalOutput {
  write(text: string): unknown;
  readonly columns?: number;
  readonly isTTY?: boolean;
  /** readline follows "resize". */
  on(event: "resize", listener: () => void): unknown;
  removeListener(event: "resize", listener: () => void): unknown;
}

/** The parts of node:readline's Interface used here that its types leave out (stable since Node 10). */
type ReadlineWithInternals = readline.Interface & {
  output: TerminalOutput;
  history: string[];
  prevRows?: number;
  line: string;
  cursor: number;
};

/** Where readline's drawing goes while a secret is typed: nowhere, so the screen stays as the question left it. */
const NO_OUTPUT: TerminalOutput = {
  write: () => true,
  columns: 80,
  isTTY: true,
  on: () => {},
  removeListener: () => {},
};

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

/**
 * readline's input: the real input, except that a read of plain text is given to readline whole (see the module
 * comment) and Ctrl-D on an empty line is the screen's to handle (readline would close at once, before anything
 * could be asked).
 */
class PastingInput extends EventEmitter {
  readonly isTTY = true;
  #source: TerminalInput;
  #decoder = new TextDecoder("utf-8");
  #escapeOpen = false;
  #hooks: { paste(text: string): void; endKey(): boolean; after(): void };

  constructor(source: TerminalInput, hooks: { paste(text: string): void; endKey(): boolean; after(): void }) {
    super();
    this.#source = source;
    this.#hooks = hooks;
    source.on("data", (chunk: Uint8Array | string) => this.#onData(chunk));
    source.on("end", () => this.emit("end"));
  }

  get isRaw(): boolean {
    return this.#source.isRaw ?? false;
  }

  setRawMode(mode: boolean): this {
    this.#source.setRawMode?.(mode);
    return this;
  }

  resume(): this {
    this.#source.resume();
    return this;
  }

  pause(): this {
    this.#source.pause();
    return this;
  }

  #onData(chunk: Uint8Array | string): void {
    const text = typeof chunk === "string" ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (text === "") return;
    if (text === "\x04" && this.#hooks.endKey()) return;
    if (!this.#escapeOpen && text.length > 1 && PLAIN_TEXT.test(text)) {
      this.#hooks.paste(text);
    } else {
      this.emit("data", Buffer.from(text, "utf8"));
    }
    this.#escapeOpen = OPEN_ESCAPE.test(text);
    this.#hooks.after();
  }
}

/** What the screen tells the interactive flow. */
export interface ScreenEvents {
  /** A line was entered (Enter), within the byte limit. */
  line(line: string): void;
  /** A line over the byte limit was entered; it is back in the input line. */
  refused(line: string, bytes: number): void;
  /** The line being typed went over the byte limit. */
  over(bytes: number): void;
  /** Ctrl-C outside a question. */
  interrupt(): void;
  /** Ctrl-D on an empty line, or the input ended (`closed`: nothing can be asked any more). */
  end(options: { closed: boolean }): void;
}

/** The screen options. */
export interface ScreenOptions {
  /** The input (default process.stdin). */
  input?: TerminalInput;
  /** The output (default process.stdout). */
  output?: TerminalOutput;
  /** Largest line, in UTF-8 bytes, that may be entered. */
  maxLineBytes: number;
}

/** One interactive terminal: owns its input and output while it runs. */
export class Screen {
  #rl: ReadlineWithInternals;
  #out: TerminalOutput;
  #events: ScreenEvents | undefined;
  #mode: "idle" | "prompt" | "question" = "idle";
  #muted = false;
  #held: string[] = [];
  #footer: string[] = [];
  #spinnerRow: string | undefined;
  #drawnFooter = 0;
  #maxLineBytes: number;
  #over = false;
  #ended = false;

  /** @param options input, output and the line limit */
  constructor(options: ScreenOptions) {
    this.#out = options.output ?? process.stdout;
    this.#maxLineBytes = options.maxLineBytes;
    const input = new PastingInput(options.input ?? process.stdin, {
      paste: (text) => this.#rl.write(text),
      endKey: () => {
        if (this.#rl.line !== "" || this.#mode === "question") return false;
        this.#events?.end({ closed: false });
        return true;
      },
      after: () => this.#checkLength(),
    });
    this.#rl = readline.createInterface({
      input: input as unknown as NodeJS.ReadableStream,
      output: this.#out as unknown as NodeJS.WritableStream,
      terminal: true,
      historySize: HISTORY_SIZE,
    }) as ReadlineWithInternals;
    this.#rl.on("line", (line) => this.#onLine(line));
    this.#rl.on("SIGINT", () => {
      if (this.#mode !== "question") this.#events?.interrupt();
    });
    this.#rl.on("close", () => {
      if (!this.#ended) this.#events?.end({ closed: true });
    });
  }

  /**
   * Starts delivering input events.
   *
   * @param events the handlers
   */
  listen(events: ScreenEvents): void {
    this.#events = events;
  }

  /** The terminal's width in columns. */
  get columns(): number {
    return this.#out.columns || 80;
  }

  /** The largest line, in UTF-8 bytes, that may be entered (the server's announced body limit may lower it). */
  set maxLineBytes(bytes: number) {
    this.#maxLineBytes = bytes;
  }

  /** Whether a question is waiting for its answer. */
  get asking(): boolean {
    return this.#mode === "question";
  }

  /** Rows of the prompt (or question) above and including the cursor's row. */
  #cursorRows(): number {
    return this.#mode === "idle" ? 0 : this.#rl.getCursorPos().rows;
  }

  /** Rows the line just entered took, with the prompt (readline's own measure, at the line's end). */
  #enteredRows(prompt: string, line: string): number {
    const saved = { line: this.#rl.line, cursor: this.#rl.cursor, prompt: this.#rl.getPrompt() };
    this.#rl.setPrompt(prompt);
    this.#rl.line = line;
    this.#rl.cursor = line.length;
    const rows = this.#rl.getCursorPos().rows + 1;
    this.#rl.line = saved.line;
    this.#rl.cursor = saved.cursor;
    this.#rl.setPrompt(saved.prompt);
    return rows;
  }

  /**
   * Redraws everything below what is printed: moves up over the prompt and the footer, clears to the end of the
   * screen, writes `rows` (new printed rows), the footer, and lets readline draw the prompt and the line again.
   */
  #draw(rows: string[], options: { up?: number } = {}): void {
    if (this.#ended) return;
    if (this.#out.isTTY === false) {
      // Output to a file or pipe: the rows only, no cursor moves, no footer.
      for (const row of rows) this.#out.write(row + "\n");
      return;
    }
    const up = options.up ?? this.#drawnFooter + this.#cursorRows();
    let text = up > 0 ? `\x1b[${up}A\r\x1b[J` : "\r\x1b[J";
    for (const row of rows) text += row + "\n";
    const footer = this.#footerRows();
    for (const row of footer) text += row + "\n";
    this.#out.write(text);
    this.#drawnFooter = footer.length;
    if (this.#mode !== "idle") {
      this.#rl.prevRows = 0;
      this.#rl.prompt(true);
    }
  }

  #footerRows(): string[] {
    const rows = this.#spinnerRow === undefined ? this.#footer : [...this.#footer, this.#spinnerRow];
    return rows.map((row) => fitRow(row, this.columns));
  }

  /**
   * Prints text above the footer and the prompt, keeping the half-typed line intact.
   *
   * @param text one or more rows (separated by newlines)
   */
  print(text: string): void {
    if (this.#muted) {
      this.#held.push(text);
      return;
    }
    this.#draw(text.split("\n"));
  }

  /**
   * Sets the rows kept just above the prompt (each cut to one row of the terminal).
   *
   * @param rows the rows, possibly none
   */
  setFooter(rows: string[]): void {
    if (rows.length === this.#footer.length && rows.every((r, i) => r === this.#footer[i])) return;
    this.#footer = rows;
    if (!this.#muted) this.#draw([]);
  }

  /**
   * Shows the prompt and starts taking lines.
   *
   * @param text the prompt, such as `#general> `
   */
  prompt(text: string): void {
    this.#rl.setPrompt(text);
    if (this.#mode === "prompt") return this.#draw([]);
    const up = this.#drawnFooter;
    this.#mode = "prompt";
    this.#draw([], { up });
  }

  #onLine(line: string): void {
    if (this.#mode !== "prompt") return;
    // Readline has moved to the row below the line: take the line off the screen (prompt included) and draw the
    // prompt again where it was; a command stays visible as typed, a message shows in the footer until stored.
    const up = this.#drawnFooter + this.#enteredRows(this.#rl.getPrompt(), line);
    const bytes = line.length * 3 <= this.#maxLineBytes ? 0 : utf8Length(line);
    if (bytes > this.#maxLineBytes) {
      this.#draw([], { up });
      this.#rl.write(line);
      this.#events?.refused(line, bytes);
      return;
    }
    const command = line.startsWith("/") && !line.startsWith("//");
    this.#draw(command ? [fitRow(this.#rl.getPrompt() + line, this.columns)] : [], { up });
    this.#over = false;
    this.#events?.line(line);
  }

  #checkLength(): void {
    if (this.#mode !== "prompt") return;
    const line = this.#rl.line;
    const bytes = line.length * 3 <= this.#maxLineBytes ? 0 : utf8Length(line);
    const over = bytes > this.#maxLineBytes;
    if (over && !this.#over) this.#events?.over(bytes);
    this.#over = over;
  }

  /**
   * Asks a question on its own line; Ctrl-C cancels it (undefined). The question and its answer (or, for a secret,
   * just the question) stay printed afterwards.
   *
   * @param query the question
   * @param options.secret do not echo the answer, and keep it out of the input history and editing memory
   * @returns the answer, or undefined when cancelled
   */
  ask(query: string, options: { secret?: boolean } = {}): Promise<string | undefined> {
    const controller = new AbortController();
    const before = this.#mode;
    let typed = "";
    const onInterrupt = () => {
      typed = this.#rl.line;
      controller.abort();
    };
    this.#rl.once("SIGINT", onInterrupt);
    // Answers (nicks, y/N, passphrases) are not chat input: Up must never bring them back.
    const history = [...this.#rl.history];
    const memory = editingMemory(this.#rl).map((stack) => [...stack]);
    const output = this.#rl.output;
    const prompt = this.#rl.getPrompt();
    // A half-typed line waits while the question is asked (readline would take it as the start of the answer).
    const halfTyped = this.#rl.line;
    this.#rl.line = "";
    this.#rl.cursor = 0;
    // readline draws the question where the prompt was (or, with no prompt shown, on the row below the footer).
    if (before === "idle") this.#rl.prevRows = 0;
    this.#mode = "question";
    return new Promise<string | undefined>((resolve) => {
      let done = false;
      const finish = (answer: string | undefined) => {
        if (done) return;
        done = true;
        this.#rl.off("SIGINT", onInterrupt);
        this.#rl.history.splice(0, Infinity, ...history);
        if (options.secret) {
          editingMemory(this.#rl).forEach((stack, i) => stack.splice(0, Infinity, ...(memory[i] ?? [])));
          this.#rl.output = output;
          this.#muted = false;
        }
        // A shown answer (or cancelled typing) left the cursor on the row below the question; a hidden one, on the
        // question's last row. Take the question off and print it again above the footer, with what it showed.
        const shown = options.secret ? "" : answer ?? typed;
        const rows = this.#enteredRows(query, shown);
        const up = this.#drawnFooter + (options.secret ? rows - 1 : rows);
        this.#rl.setPrompt(prompt);
        this.#mode = before;
        const held = this.#held;
        this.#held = [];
        this.#draw([fitRow(query + shown, this.columns), ...held.flatMap((t) => t.split("\n"))], { up });
        if (halfTyped !== "") this.#rl.write(halfTyped);
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

  /**
   * Shows a spinner row in the footer until the returned function is called.
   *
   * @param text what is going on
   * @returns stops the spinner and returns the seconds it ran
   */
  spinner(text: string): () => number {
    let i = 0;
    const started = performance.now();
    const draw = () => {
      this.#spinnerRow = `${SPINNER[i++ % SPINNER.length]} ${text}`;
      if (!this.#muted) this.#draw([]);
    };
    draw();
    const timer = setInterval(draw, 100);
    return () => {
      clearInterval(timer);
      this.#spinnerRow = undefined;
      if (!this.#muted) this.#draw([]);
      return (performance.now() - started) / 1000;
    };
  }

  /** Stops reading and takes the footer and prompt off the screen, so the shell starts on a fresh line. */
  end(): void {
    if (this.#ended) return;
    if (this.#mode === "question" || this.#out.isTTY === false) {
      // The question stays; the shell starts below it.
      this.#out.write("\n");
    } else {
      const up = this.#drawnFooter + this.#cursorRows();
      this.#out.write(up > 0 ? `\x1b[${up}A\r\x1b[J` : "\r\x1b[J");
    }
    this.#ended = true;
    this.#mode = "idle";
    this.#rl.close();
  }
}
