/**
 * Every touch of the terminal: raw input decoded into keys (keys.ts), the line being typed (line_editor.ts), and
 * the screen: printing above the input, a footer of rows kept just above it (lines waiting to be stored, the
 * connection state, a spinner), the status line, the prompt or a question with the line being typed, the bell,
 * bracketed paste, clearing, resizing, and leaving the screen clean.
 *
 * The screen from top to bottom: what was printed; the footer; the status line; the prompt (or a question) with the
 * line being typed. Those last rows are the zone: every row in it is written by this module as a row of its own, at
 * most one column narrower than the terminal, so the terminal never wraps one itself. Printing moves the cursor up
 * over the zone, clears to the end of the screen, writes the new rows and the zone again: one write, so nothing
 * flickers or is seen half drawn.
 *
 * When the terminal gets narrower it re-wraps the rows it shows (tmux, VTE, kitty, iTerm2, Windows Terminal and
 * Alacritty do), so on a resize the zone's old rows are counted again at the new width before they are cleared;
 * wider, a row stays a row.
 *
 * Bracketed paste (`ESC[?2004h`) is turned on while the screen runs: a paste is inserted into the line, line breaks
 * included, and nothing of it runs until Enter. Without it, every line break of a paste is Enter, in order.
 *
 * @module
 */

import process from "node:process";
import type { Completed } from "./completion.ts";
import { textColumns } from "./graphemes.ts";
import { type Key, KeyDecoder } from "./keys.ts";
import { LineEditor } from "./line_editor.ts";
import { fitRow } from "./render.ts";

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/** How long a lone ESC waits for the rest of an escape sequence before it is the Escape key. */
const ESCAPE_WAIT_MS = 50;
const BRACKETED_PASTE_ON = "\x1b[?2004h";
const BRACKETED_PASTE_OFF = "\x1b[?2004l";
/**
 * Clears from the start of the cursor's row to the end of the screen. Not `\r ESC[J`: from the top left corner that
 * clears the whole screen, which tmux (scroll-on-clear) first copies into the scrollback, leaving stale rows there;
 * so the rest of the screen is cleared from the second column, then the row itself.
 */
const CLEAR_BELOW = "\r\x1b[C\x1b[J\r\x1b[K";
// deno-lint-ignore no-control-regex
const SGR = /\x1b\[[0-9;]*m/g;

/** The terminal's input (process.stdin in a real terminal). */
export interface TerminalInput {
  on(event: "data", listener: (chunk: Uint8Array | string) => void): unknown;
  on(event: "end", listener: () => void): unknown;
  removeListener?(event: "data", listener: (chunk: Uint8Array | string) => void): unknown;
  removeListener?(event: "end", listener: () => void): unknown;
  setRawMode?(mode: boolean): unknown;
  readonly isRaw?: boolean;
  resume(): unknown;
  pause(): unknown;
}

/** The terminal's output (process.stdout in a real terminal). */
export interface TerminalOutput {
  write(text: string): unknown;
  readonly columns?: number;
  readonly rows?: number;
  readonly isTTY?: boolean;
  /** The screen follows "resize". */
  on(event: "resize", listener: () => void): unknown;
  removeListener(event: "resize", listener: () => void): unknown;
}

/** What the screen tells the interactive flow. */
export interface ScreenEvents {
  /**
   * A line was entered (Enter), within the byte limit and not blank. A pasted multi-line message comes whole, with
   * `\n` between its lines.
   */
  line(line: string): void;
  /** A line over the byte limit was entered; it is still in the input line. */
  refused(line: string, bytes: number): void;
  /** The line being typed went over the byte limit. */
  over(bytes: number): void;
  /** Ctrl-C on an empty line outside a question (with text, Ctrl-C only clears the line). */
  interrupt(): void;
  /** Ctrl-D on an empty line, or the input ended (`closed`: nothing can be asked any more). */
  end(options: { closed: boolean }): void;
  /** Alt-1..9: the conversation with that number. */
  switchTo?(index: number): void;
  /** Ctrl-N (1) or Ctrl-P (-1): the next or previous conversation. */
  cycle?(step: 1 | -1): void;
  /** Tab: the completed line, or undefined when nothing completes. */
  complete?(text: string, cursor: number): Completed | undefined;
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

/** A question being asked in the input's place. */
interface Question {
  query: string;
  secret: boolean;
  editor: LineEditor;
  finish(answer: string | undefined): void;
}

/** The zone as it was last drawn: what a redraw must move up over. */
interface Drawn {
  /** Rows of the zone above the cursor's row. */
  cursorRow: number;
  cursorCol: number;
  /** The columns each row of the zone took, down to the cursor's. */
  widths: number[];
  /** The terminal's width then. */
  columns: number;
}

/** The rows below what is printed. */
interface Zone {
  rows: string[];
  widths: number[];
  cursorRow: number;
  cursorCol: number;
}

/** One interactive terminal: owns its input and output while it runs. */
export class Screen {
  #input: TerminalInput;
  #out: TerminalOutput;
  #tty: boolean;
  #events: ScreenEvents | undefined;
  #keys = new KeyDecoder();
  #escapeTimer: ReturnType<typeof setTimeout> | undefined;
  #editor = new LineEditor();
  #prompt: string | undefined;
  #question: Question | undefined;
  /** Questions waiting for the one being asked. */
  #waiting: (() => void)[] = [];
  #footer: string[] = [];
  #spinnerRow: string | undefined;
  #status: ((width: number) => string) | undefined;
  #drawn: Drawn = { cursorRow: 0, cursorCol: 0, widths: [0], columns: 80 };
  #maxLineBytes: number;
  #over = false;
  #ended = false;
  #onData = (chunk: Uint8Array | string) => this.#keysIn(this.#keys.push(chunk));
  #onEnd = () => {
    if (!this.#ended) this.#events?.end({ closed: true });
  };
  #onResize = () => this.#resized();

  /** @param options input, output and the line limit */
  constructor(options: ScreenOptions) {
    this.#input = options.input ?? process.stdin;
    this.#out = options.output ?? process.stdout;
    this.#tty = this.#out.isTTY !== false;
    this.#maxLineBytes = options.maxLineBytes;
    this.#drawn.columns = this.columns;
    this.#input.setRawMode?.(true);
    this.#input.on("data", this.#onData);
    this.#input.on("end", this.#onEnd);
    this.#input.resume();
    this.#out.on("resize", this.#onResize);
    if (this.#tty) this.#out.write(BRACKETED_PASTE_ON);
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

  /** The terminal's height in rows. */
  get rows(): number {
    return this.#out.rows || 24;
  }

  /** The largest line, in UTF-8 bytes, that may be entered (the server's announced body limit may lower it). */
  set maxLineBytes(bytes: number) {
    this.#maxLineBytes = bytes;
  }

  /**
   * Prints text above the footer and the input, keeping the half-typed line intact.
   *
   * @param text one or more rows (separated by newlines)
   */
  print(text: string): void {
    this.#draw(text.split("\n"));
  }

  /**
   * Sets the rows kept just above the status line and the input (each cut to one row of the terminal).
   *
   * @param rows the rows, possibly none
   */
  setFooter(rows: string[]): void {
    if (rows.length === this.#footer.length && rows.every((r, i) => r === this.#footer[i])) return;
    this.#footer = rows;
    this.#draw([]);
  }

  /**
   * Sets the status line, drawn just above the input at whatever width the terminal has.
   *
   * @param render gives the row for a width; undefined removes the line
   */
  setStatus(render: ((width: number) => string) | undefined): void {
    this.#status = render;
    this.#draw([]);
  }

  /**
   * Shows the prompt and starts taking lines.
   *
   * @param text the prompt, such as `#general> `
   */
  prompt(text: string): void {
    this.#prompt = text;
    this.#draw([]);
  }

  /**
   * Puts text in the input line for editing (a line refused or not confirmed).
   *
   * @param text the text; what was being typed meanwhile goes after it
   */
  putBack(text: string): void {
    const typed = this.#editor.text;
    this.#editor.set(typed === "" ? text : `${text} ${typed}`, text.length);
    this.#draw([]);
  }

  /** Rings the terminal's bell. */
  bell(): void {
    if (!this.#ended && this.#tty) this.#out.write("\x07");
  }

  /** Clears the screen and the terminal's scrollback, and draws the footer, status and input at the top. */
  clear(): void {
    this.#draw([], { clear: "all" });
  }

  /**
   * Asks a question in the input's place; Ctrl-C cancels it (undefined). The question and its answer (or, for a
   * secret, just the question) stay printed afterwards; a half-typed line waits and comes back after it. Questions
   * asked while one is open wait their turn.
   *
   * @param query the question
   * @param options.secret do not echo the answer (nothing of it is drawn, not even its length), and keep it out of
   *   the input history, kill buffer and undo
   * @returns the answer, or undefined when cancelled
   */
  ask(query: string, options: { secret?: boolean } = {}): Promise<string | undefined> {
    return new Promise<string | undefined>((resolve) => {
      const start = () => {
        if (this.#ended) return resolve(undefined);
        // A question's own editor: nothing typed at it can be brought back at the prompt.
        const editor = new LineEditor({ historySize: 0 });
        const secret = options.secret ?? false;
        this.#question = {
          query,
          secret,
          editor,
          finish: (answer) => {
            this.#question = undefined;
            const shown = secret ? "" : answer ?? editor.text;
            this.#draw([fitRow(query + shown, this.columns)]);
            resolve(answer);
            this.#waiting.shift()?.();
          },
        };
        this.#draw([]);
      };
      if (this.#question) this.#waiting.push(start);
      else start();
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
      this.#draw([]);
    };
    draw();
    const timer = setInterval(draw, 100);
    return () => {
      clearInterval(timer);
      this.#spinnerRow = undefined;
      this.#draw([]);
      return (performance.now() - started) / 1000;
    };
  }

  /**
   * Stops reading and takes the footer, status line and input off the screen (a question being asked stays), so the
   * shell starts on a fresh line; the terminal's modes are restored.
   */
  end(): void {
    if (this.#ended) return;
    const question = this.#question;
    if (question) {
      this.#question = undefined;
      this.#draw([fitRow(question.query + (question.secret ? "" : question.editor.text), this.columns)]);
    }
    this.#footer = [];
    this.#spinnerRow = undefined;
    this.#status = undefined;
    this.#prompt = undefined;
    if (this.#tty) this.#out.write(`${this.#moveUp(this.#drawn.cursorRow)}${CLEAR_BELOW}${BRACKETED_PASTE_OFF}`);
    this.#ended = true;
    // Questions still waiting get no answer.
    for (const start of this.#waiting.splice(0)) start();
    clearTimeout(this.#escapeTimer);
    this.#input.removeListener?.("data", this.#onData);
    this.#input.removeListener?.("end", this.#onEnd);
    this.#out.removeListener("resize", this.#onResize);
    this.#input.setRawMode?.(false);
    this.#input.pause();
  }

  /** Handles the keys of one read, then checks the length and draws once. */
  #keysIn(keys: Key[]): void {
    if (this.#ended) return;
    clearTimeout(this.#escapeTimer);
    for (const key of keys) {
      if (this.#ended) return;
      this.#key(key);
    }
    if (this.#keys.waiting) {
      this.#escapeTimer = setTimeout(() => this.#keysIn(this.#keys.flush()), ESCAPE_WAIT_MS);
    }
    this.#checkLength();
    this.#draw([]);
  }

  /** The editor keys go to: the question's, or the line's. */
  get #active(): LineEditor {
    return this.#question?.editor ?? this.#editor;
  }

  #key(key: Key): void {
    const editor = this.#active;
    if (key.kind === "text") return editor.insert(key.text, { typed: true });
    if (key.kind === "paste") {
      // An answer is one line: a pasted line break in it is dropped.
      return editor.insert(this.#question ? key.text.replace(/\n/g, "") : key.text);
    }
    const { name, ctrl, meta } = key;
    if (name === "tab" && !key.shift) return this.#complete();
    if (ctrl && !meta) return this.#control(name, editor);
    if (meta && /^[1-9]$/.test(name)) return void (this.#question ? undefined : this.#events?.switchTo?.(Number(name)));
    if (meta) return this.#alt(name, editor);
    switch (name) {
      case "enter":
        return this.#enter();
      case "backspace":
        return editor.backspace();
      case "delete":
        return editor.deleteForward();
      case "left":
        return editor.left();
      case "right":
        return editor.right();
      case "home":
        return editor.home();
      case "end":
        return editor.end();
      case "up":
        return this.#question ? undefined : editor.historyBack();
      case "down":
        return this.#question ? undefined : editor.historyForward();
    }
  }

  #control(name: string, editor: LineEditor): void {
    switch (name) {
      case "a":
        return editor.home();
      case "e":
        return editor.end();
      case "b":
        return editor.left();
      case "f":
        return editor.right();
      case "left":
        return editor.wordLeft();
      case "right":
        return editor.wordRight();
      case "u":
        return editor.killToStart();
      case "k":
        return editor.killToEnd();
      case "w":
        return editor.killWordBack();
      case "y":
        return editor.yank();
      case "_":
        return editor.undo();
      case "c":
        return this.#interrupt(editor);
      case "d":
        if (editor.text !== "") return editor.deleteForward();
        if (this.#question) return this.#question.finish(undefined);
        return this.#events?.end({ closed: false });
      case "n":
        return void (this.#question ? undefined : this.#events?.cycle?.(1));
      case "p":
        return void (this.#question ? undefined : this.#events?.cycle?.(-1));
      case "l":
        // As in a shell: a clean screen, what was on it still in the scrollback.
        return this.#draw([], { clear: "screen" });
    }
  }

  #alt(name: string, editor: LineEditor): void {
    switch (name) {
      case "b":
      case "left":
        return editor.wordLeft();
      case "f":
      case "right":
        return editor.wordRight();
      case "d":
        return editor.killWordForward();
      case "backspace":
        return editor.killWordBack();
    }
  }

  /** Ctrl-C: cancels a question, clears a half-typed line, and on an empty line asks to quit. */
  #interrupt(editor: LineEditor): void {
    if (this.#question) return this.#question.finish(undefined);
    if (editor.text !== "") {
      editor.clear();
      this.#over = false;
      return;
    }
    this.#events?.interrupt();
  }

  #complete(): void {
    if (this.#question || this.#prompt === undefined) return;
    const editor = this.#editor;
    const done = this.#events?.complete?.(editor.text, editor.cursor);
    if (done) editor.set(done.text, done.cursor);
  }

  #enter(): void {
    const question = this.#question;
    if (question) return question.finish(question.editor.text);
    if (this.#prompt === undefined) return;
    const editor = this.#editor;
    const bytes = editor.bytes;
    if (bytes > this.#maxLineBytes) {
      this.#events?.refused(editor.text, bytes);
      return;
    }
    const line = editor.take();
    this.#over = false;
    if (line.trim() === "") return;
    // A command stays visible as typed; a message shows in the footer until stored.
    const command = !line.includes("\n") && line.startsWith("/") && !line.startsWith("//");
    if (command) this.#draw([fitRow(this.#prompt + line, this.columns)]);
    this.#events?.line(line);
  }

  #checkLength(): void {
    if (this.#question || this.#prompt === undefined) return;
    const bytes = this.#editor.bytes;
    const over = bytes > this.#maxLineBytes;
    if (over && !this.#over) this.#events?.over(bytes);
    this.#over = over;
  }

  /** The footer, the status line and the input, laid out for the terminal as it is now. */
  #zone(): Zone {
    const columns = this.columns;
    const rows: string[] = [];
    for (const row of this.#spinnerRow === undefined ? this.#footer : [...this.#footer, this.#spinnerRow]) {
      rows.push(fitStyled(row, columns));
    }
    if (this.#status) rows.push(this.#status(columns));
    const widths = rows.map(rowColumns);
    const question = this.#question;
    const prompt = question ? question.query : this.#prompt;
    if (prompt === undefined) {
      return { rows: [...rows, ""], widths: [...widths, 0], cursorRow: rows.length, cursorCol: 0 };
    }
    const input = (question?.editor ?? this.#editor).layout({
      prompt,
      width: columns,
      maxRows: Math.max(1, this.rows - rows.length - 1),
      secret: question?.secret,
    });
    return {
      rows: [...rows, ...input.rows],
      widths: [...widths, ...input.widths],
      cursorRow: rows.length + input.cursorRow,
      cursorCol: input.cursorCol,
    };
  }

  /**
   * Redraws everything below what is printed: moves up over the zone as drawn, clears to the end of the screen (or
   * the whole screen and scrollback), writes `printed` and the zone, and puts the cursor where the line's cursor is.
   */
  #draw(printed: string[], options: { clear?: "screen" | "all"; up?: number } = {}): void {
    if (this.#ended) return;
    if (!this.#tty) {
      // Output to a file or pipe: the rows only, no cursor moves, no zone.
      for (const row of printed) this.#out.write(row + "\n");
      return;
    }
    let text = options.clear ? "\x1b[H\x1b[2J\x1b[3J" : this.#moveUp(options.up ?? this.#drawn.cursorRow) + CLEAR_BELOW;
    for (const row of printed) text += row + "\r\n";
    const zone = this.#zone();
    text += zone.rows.join("\r\n");
    text += this.#moveUp(zone.rows.length - 1 - zone.cursorRow) + "\r";
    if (zone.cursorCol > 0) text += `\x1b[${zone.cursorCol}C`;
    this.#out.write(text);
    this.#drawn = {
      cursorRow: zone.cursorRow,
      cursorCol: zone.cursorCol,
      widths: zone.widths.slice(0, zone.cursorRow + 1),
      columns: this.columns,
    };
  }

  #moveUp(rows: number): string {
    return rows > 0 ? `\x1b[${rows}A` : "";
  }

  /**
   * The terminal changed size: it has re-wrapped the rows of the zone if it got narrower, so they are counted again
   * at the new width before the zone is cleared and drawn anew.
   */
  #resized(): void {
    const drawn = this.#drawn;
    const columns = this.columns;
    let up = drawn.cursorRow;
    if (columns < drawn.columns) {
      up = 0;
      for (let i = 0; i < drawn.cursorRow; i++) up += Math.max(1, Math.ceil(drawn.widths[i] / columns));
      up += Math.floor(drawn.cursorCol / columns);
    }
    this.#draw([], { up });
  }
}

/**
 * A row cut to the terminal's width: its colour escapes take no columns, and a row too wide loses its colours rather
 * than be cut inside an escape sequence.
 */
function fitStyled(row: string, columns: number): string {
  if (!row.includes("\x1b")) return fitRow(row, columns);
  const plain = row.replace(SGR, "");
  return fitRow(plain, columns) === plain ? row : fitRow(plain, columns);
}

/** The columns a drawn row takes (its colour escapes take none). */
function rowColumns(row: string): number {
  return textColumns(row.replace(SGR, ""));
}
