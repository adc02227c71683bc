/**
 * The line being typed, edited by user-perceived characters: the text, a cursor that always sits between two
 * graphemes (a flag or a ZWJ emoji is one character for Backspace, Delete and the arrows), the kill buffer and undo
 * of readline's habits, the input history, and the layout of the line on a terminal of a given width (wide
 * characters take two columns; a pasted line break starts an indented row). No terminal I/O: screen.ts draws it.
 *
 * Every edit costs time in proportion to what it changes, not to the whole line: the graphemes and their widths are
 * kept beside the text and only the part around an edit is segmented again, and the UTF-8 length is kept as the
 * text changes. A 16 KiB paste is therefore as cheap per character as a short one.
 *
 * @module
 */

import { utf8Length } from "../names.ts";
import { graphemeColumns, GRAPHEMES, textColumns } from "./graphemes.ts";

/** The width marker of a line break inside the text (a pasted multi-line message). */
const NEWLINE = -1;
/** Undo steps kept. */
const UNDO_STEPS = 100;
/** Lines kept for Up and Down. */
const HISTORY_SIZE = 500;
const SPACE = /\s/;

/** How the line looks on the terminal: rows to write and where the cursor goes. */
export interface LineLayout {
  /** The rows, the prompt at the start of the first; continuation rows indented. */
  rows: string[];
  /** The columns each row takes. */
  widths: number[];
  /** The row the cursor is on (an index into `rows`). */
  cursorRow: number;
  /** The column the cursor is at. */
  cursorCol: number;
  /** Rows of the line above the first one shown (a line taller than the room it has; the first shown starts with …). */
  hiddenAbove: number;
}

/** Options of {@link LineEditor.layout}. */
export interface LayoutOptions {
  /** What comes before the text on the first row (a prompt or a question). */
  prompt: string;
  /** The terminal's columns; rows use at most one fewer, so the terminal never wraps one itself. */
  width: number;
  /** The most rows the line may take on screen (default: no limit); the rows around the cursor are shown. */
  maxRows?: number;
  /** Show nothing of the text and keep the cursor after the prompt (a passphrase). */
  secret?: boolean;
}

/**
 * An editable line.
 *
 * @example
 * ```ts
 * const line = new LineEditor();
 * line.insert("flag 🇫🇷");
 * line.backspace(); // one grapheme: the whole flag
 * line.text; // "flag "
 * ```
 */
export class LineEditor {
  #text = "";
  #cursor = 0;
  /** The offset of each grapheme in the text, in order. */
  #starts: number[] = [];
  /** The columns of each grapheme ({@link NEWLINE} for a line break). */
  #widths: number[] = [];
  #bytes = 0;
  #killed = "";
  #undo: { text: string; cursor: number }[] = [];
  /** The last edit was typed text: the next typed text joins its undo step. */
  #typing = false;
  #history: string[] = [];
  /** Where Up and Down are in the history (its length: the line being typed). */
  #historyAt = 0;
  /** The line being typed while the history is browsed. */
  #draft = "";
  #historySize: number;
  /** The rows as last laid out, for a prompt width, row width and indent. */
  #rows: { promptWidth: number; max: number; indent: number; starts: number[]; widths: number[] } | undefined;
  /** The first grapheme changed since the rows were laid out. */
  #changedFrom = 0;

  /** @param options.historySize lines kept for Up and Down (0: no history, as for a passphrase) */
  constructor(options: { historySize?: number } = {}) {
    this.#historySize = options.historySize ?? HISTORY_SIZE;
  }

  /** The text. */
  get text(): string {
    return this.#text;
  }

  /** The cursor, as an offset into the text (always between two graphemes). */
  get cursor(): number {
    return this.#cursor;
  }

  /** The text's length in UTF-8 bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Graphemes in the text. */
  get graphemes(): number {
    return this.#starts.length;
  }

  /**
   * Replaces the text (a history entry, a completion, a line put back) and puts the cursor at `cursor`.
   *
   * @param text the new text
   * @param cursor where the cursor goes (default: the end); moved back to a grapheme boundary if inside one
   */
  set(text: string, cursor = text.length): void {
    this.#remember(false);
    this.#reset(text, cursor);
  }

  /**
   * Inserts text at the cursor and moves the cursor after it. Control characters other than tab and line break are
   * dropped; CR LF and CR become line breaks.
   *
   * @param text typed or pasted text
   * @param options.typed typing: joins the previous typed text's undo step
   */
  insert(text: string, options: { typed?: boolean } = {}): void {
    // deno-lint-ignore no-control-regex
    const clean = text.replace(/\r\n?/g, "\n").replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "");
    if (clean === "") return;
    this.#remember(options.typed ?? false);
    const at = this.#cursor;
    this.#replace(at, at, clean);
    // What was inserted may have joined the grapheme after it (a regional indicator before a flag's first half).
    this.#cursor = this.#snap(at + clean.length, { forward: true });
  }

  /** Deletes the grapheme before the cursor (Backspace). */
  backspace(): void {
    const g = this.#indexAt(this.#cursor);
    if (g <= 0) return;
    this.#remember(false);
    this.#delete(this.#starts[g - 1], this.#cursor);
  }

  /** Deletes the grapheme under the cursor (Delete, Ctrl-D on a non-empty line). */
  deleteForward(): void {
    const g = this.#indexAt(this.#cursor);
    if (g >= this.#starts.length) return;
    this.#remember(false);
    this.#delete(this.#cursor, this.#offsetOf(g + 1));
  }

  /** Moves the cursor one grapheme left. */
  left(): void {
    const g = this.#indexAt(this.#cursor);
    if (g > 0) this.#moveTo(this.#starts[g - 1]);
  }

  /** Moves the cursor one grapheme right. */
  right(): void {
    const g = this.#indexAt(this.#cursor);
    if (g < this.#starts.length) this.#moveTo(this.#offsetOf(g + 1));
  }

  /** Moves the cursor to the start of the text. */
  home(): void {
    this.#moveTo(0);
  }

  /** Moves the cursor to the end of the text. */
  end(): void {
    this.#moveTo(this.#text.length);
  }

  /** Moves the cursor to the start of the word before it (Alt-B, Ctrl-Left). */
  wordLeft(): void {
    this.#moveTo(this.#wordStart());
  }

  /** Moves the cursor past the end of the word after it (Alt-F, Ctrl-Right). */
  wordRight(): void {
    this.#moveTo(this.#wordEnd());
  }

  /** Cuts from the start of the text to the cursor into the kill buffer (Ctrl-U). */
  killToStart(): void {
    this.#kill(0, this.#cursor);
  }

  /** Cuts from the cursor to the end of the text into the kill buffer (Ctrl-K). */
  killToEnd(): void {
    this.#kill(this.#cursor, this.#text.length);
  }

  /** Cuts the word before the cursor, back to white space (Ctrl-W, Alt-Backspace). */
  killWordBack(): void {
    this.#kill(this.#wordStart(), this.#cursor);
  }

  /** Cuts the word after the cursor (Alt-D). */
  killWordForward(): void {
    this.#kill(this.#cursor, this.#wordEnd());
  }

  /** Inserts what was cut last (Ctrl-Y). */
  yank(): void {
    if (this.#killed !== "") this.insert(this.#killed);
  }

  /** Takes back the last edit (Ctrl-_). */
  undo(): void {
    const step = this.#undo.pop();
    this.#typing = false;
    if (step) this.#reset(step.text, step.cursor);
  }

  /** Empties the line (Ctrl-C), keeping it for undo. */
  clear(): void {
    if (this.#text === "") return;
    this.#remember(false);
    this.#reset("", 0);
  }

  /**
   * Takes the line: returns it, adds it to the history (when not empty and not a repeat of the last entry), and
   * empties the line for the next one.
   *
   * @returns the text
   */
  take(): string {
    const text = this.#text;
    if (this.#historySize > 0 && text.trim() !== "" && this.#history[this.#history.length - 1] !== text) {
      this.#history.push(text);
      if (this.#history.length > this.#historySize) this.#history.shift();
    }
    this.#historyAt = this.#history.length;
    this.#draft = "";
    this.#undo = [];
    this.#typing = false;
    this.#reset("", 0);
    return text;
  }

  /** Shows the previous history entry (Up); the line being typed is kept for Down. */
  historyBack(): void {
    if (this.#historyAt === 0) return;
    if (this.#historyAt === this.#history.length) this.#draft = this.#text;
    this.#historyAt--;
    this.set(this.#history[this.#historyAt]);
  }

  /** Shows the next history entry (Down), and at the end the line that was being typed. */
  historyForward(): void {
    if (this.#historyAt >= this.#history.length) return;
    this.#historyAt++;
    this.set(this.#historyAt === this.#history.length ? this.#draft : this.#history[this.#historyAt]);
  }

  /**
   * Lays the line out on a terminal: the prompt, the text in rows at most `width - 1` columns wide (a wide character
   * that does not fit moves to the next row), a row for each pasted line break, continuation rows indented under the
   * text (when the prompt is narrow enough), and where the cursor is. Only the rows around the cursor are returned
   * when there are more than `maxRows`.
   *
   * @param options prompt, width and height
   * @returns the rows and the cursor
   */
  layout(options: LayoutOptions): LineLayout {
    const max = Math.max(4, options.width - 1);
    const promptWidth = textColumns(options.prompt);
    if (options.secret) {
      return { rows: [options.prompt], widths: [promptWidth], cursorRow: 0, cursorCol: promptWidth, hiddenAbove: 0 };
    }
    const indent = promptWidth <= max / 2 ? promptWidth : 0;
    const { starts: rowStarts, widths } = this.#rowsFor(promptWidth, max, indent);
    const cursorAt = this.#indexAt(this.#cursor);
    // The last row starting at or before the cursor.
    let cursorRow = 0;
    for (let hi = rowStarts.length - 1; cursorRow < hi;) {
      const mid = (cursorRow + hi + 1) >> 1;
      if (rowStarts[mid] <= cursorAt) cursorRow = mid;
      else hi = mid - 1;
    }
    let cursorCol = cursorRow === 0 ? promptWidth : indent;
    for (let g = rowStarts[cursorRow]; g < cursorAt; g++) cursorCol += Math.max(0, this.#widths[g]);
    const total = rowStarts.length;
    const shown = Math.max(1, Math.min(total, options.maxRows ?? total));
    const top = Math.min(Math.max(0, cursorRow - shown + 1), total - shown);
    const pad = " ".repeat(indent);
    const rows: string[] = [];
    for (let r = top; r < top + shown; r++) {
      const from = this.#offsetOf(rowStarts[r]);
      const to = r + 1 < total ? this.#offsetOf(rowStarts[r + 1]) : this.#text.length;
      const text = this.#text.slice(from, to).replace(/\n$/, "").replaceAll("\t", " ");
      // A row after hidden ones starts with an ellipsis in its indent: there is more above.
      const head = r === 0 ? options.prompt : r === top && indent > 0 ? "…" + pad.slice(1) : pad;
      rows.push(head + text);
    }
    return { rows, widths: widths.slice(top, top + shown), cursorRow: cursorRow - top, cursorCol, hiddenAbove: top };
  }

  /**
   * Where each row starts (a grapheme index) and the columns it takes. Rows before the first change since the last
   * layout are kept (one more is laid out again: a deletion may let its next grapheme fit), so typing at the end of a
   * long line lays out only its last rows.
   */
  #rowsFor(promptWidth: number, max: number, indent: number): { starts: number[]; widths: number[] } {
    let rows = this.#rows;
    if (!rows || rows.promptWidth !== promptWidth || rows.max !== max || rows.indent !== indent) {
      rows = { promptWidth, max, indent, starts: [0], widths: [] };
      this.#rows = rows;
      this.#changedFrom = 0;
    }
    const { starts, widths } = rows;
    let r = starts.length - 1;
    while (r > 0 && starts[r] > this.#changedFrom) r--;
    r = Math.max(0, r - 1);
    starts.length = r + 1;
    widths.length = r;
    let col = r === 0 ? promptWidth : indent;
    const count = this.#starts.length;
    for (let g = starts[r]; g < count; g++) {
      const w = this.#widths[g];
      if (w === NEWLINE) {
        widths.push(col);
        starts.push(g + 1);
        col = indent;
        continue;
      }
      if (col + w > max && col > indent) {
        widths.push(col);
        starts.push(g);
        col = indent;
      }
      col += w;
    }
    widths.push(col);
    this.#changedFrom = count;
    return rows;
  }

  /** Saves the text for undo, unless this is typing that continues typing. */
  #remember(typed: boolean): void {
    if (!(typed && this.#typing)) {
      this.#undo.push({ text: this.#text, cursor: this.#cursor });
      if (this.#undo.length > UNDO_STEPS) this.#undo.shift();
    }
    this.#typing = typed;
  }

  #kill(from: number, to: number): void {
    if (from >= to) return;
    this.#remember(false);
    this.#killed = this.#text.slice(from, to);
    this.#delete(from, to);
  }

  #delete(from: number, to: number): void {
    this.#replace(from, to, "");
    // What was on either side may now be one grapheme (two halves of a flag).
    this.#cursor = this.#snap(from, { forward: false });
  }

  /** The grapheme boundary at `offset`, or the nearest one after (or before) it. */
  #snap(offset: number, options: { forward: boolean }): number {
    const starts = this.#starts;
    if (offset >= this.#text.length) return this.#text.length;
    let lo = 0;
    let hi = starts.length - 1;
    // The last grapheme starting at or before offset.
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    if (starts[lo] === offset || !options.forward) return starts[lo] ?? 0;
    return this.#offsetOf(lo + 1);
  }

  #moveTo(offset: number): void {
    this.#cursor = offset;
    this.#typing = false;
  }

  /** The offset of grapheme `g` (the text's length past the last). */
  #offsetOf(g: number): number {
    return g < this.#starts.length ? this.#starts[g] : this.#text.length;
  }

  /** The index of the grapheme that starts at `offset` (the count at the end; -1 when no grapheme starts there). */
  #indexAt(offset: number): number {
    const starts = this.#starts;
    if (offset === this.#text.length) return starts.length;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] < offset) lo = mid + 1;
      else if (starts[mid] > offset) hi = mid - 1;
      else return mid;
    }
    return -1;
  }

  #isSpace(g: number): boolean {
    return SPACE.test(this.#text[this.#starts[g]]);
  }

  #wordStart(): number {
    let g = this.#indexAt(this.#cursor);
    while (g > 0 && this.#isSpace(g - 1)) g--;
    while (g > 0 && !this.#isSpace(g - 1)) g--;
    return this.#offsetOf(g);
  }

  #wordEnd(): number {
    let g = this.#indexAt(this.#cursor);
    const count = this.#starts.length;
    while (g < count && this.#isSpace(g)) g++;
    while (g < count && !this.#isSpace(g)) g++;
    return this.#offsetOf(g);
  }

  #reset(text: string, cursor: number): void {
    this.#text = "";
    this.#starts = [];
    this.#widths = [];
    this.#bytes = 0;
    this.#replace(0, 0, text);
    // A cursor inside a grapheme goes back to its start.
    this.#cursor = this.#snap(Math.max(0, Math.min(cursor, text.length)), { forward: false });
  }

  /**
   * Replaces text[from, to) (both grapheme boundaries) with `insert`, and segments again only what can have changed:
   * from the grapheme before the edit up to the first boundary after it that was a boundary before.
   */
  #replace(from: number, to: number, insert: string): void {
    const old = this.#text;
    const delta = insert.length - (to - from);
    const text = old.slice(0, from) + insert + old.slice(to);
    const gFrom = this.#indexAt(from);
    const gTo = this.#indexAt(to);
    const first = Math.max(0, gFrom - 1);
    const segStart = first < this.#starts.length ? this.#starts[first] : from;
    const newStarts: number[] = [];
    const newWidths: number[] = [];
    let resume = this.#starts.length;
    const editEnd = from + insert.length;
    for (const { segment, index } of GRAPHEMES.segment(text.slice(segStart))) {
      const at = segStart + index;
      if (at >= editEnd && at > segStart) {
        const before = at - delta;
        const j = before === old.length ? this.#starts.length : this.#indexAt(before);
        if (j >= gTo) {
          resume = j;
          break;
        }
      }
      newStarts.push(at);
      newWidths.push(segment === "\n" ? NEWLINE : graphemeColumns(segment));
    }
    const tailStarts = this.#starts.slice(resume);
    const tailWidths = this.#widths.slice(resume);
    this.#starts.length = first;
    this.#widths.length = first;
    for (let i = 0; i < newStarts.length; i++) {
      this.#starts.push(newStarts[i]);
      this.#widths.push(newWidths[i]);
    }
    for (let i = 0; i < tailStarts.length; i++) {
      this.#starts.push(tailStarts[i] + delta);
      this.#widths.push(tailWidths[i]);
    }
    this.#bytes += utf8Length(insert) - utf8Length(old.slice(from, to));
    this.#text = text;
    this.#changedFrom = Math.min(this.#changedFrom, first);
  }
}
