/**
 * How messages look: one line each (`HH:MM:SS <nick> text`, `HH:MM:SS * nick text` for actions), a stable colour
 * per nick when colour is on, JSON lines for scripts, and the neutralizing of control characters that a sender
 * could otherwise use to rewrite the reader's terminal.
 *
 * @module
 */

import type { ShownMessage } from "./session.ts";

/** Colours from the 256-colour palette that read well on dark and light backgrounds. */
const NICK_COLOURS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96, 166, 172, 38, 70, 130, 135, 141, 168];

// Line breaks a reader could split on: CR LF, LF, CR, VT, FF, the file/group/record separators, NEL, and the Unicode
// line and paragraph separators (Python's str.splitlines() splits on every one of them).
// deno-lint-ignore no-control-regex
const LINE_BREAKS = /\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/g;
// Every other control character (Cc), the remaining separators (Zl, Zp), and the bidirectional formatting characters
// that can reorder what is shown (LRM, RLM, ALM, the embeddings and overrides, the isolates). ZWJ and ZWNJ (emoji,
// Persian, Indic scripts) and variation selectors are kept.
const UNSAFE = /[\p{Cc}\p{Zl}\p{Zp}\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]/gu;
/** The longest nick shown from the server; a longer one (only a lying server sends it) is cut with an ellipsis. */
const MAX_SHOWN_NICK = 48;

/**
 * Makes untrusted text safe to print as one line on a terminal or in a text stream: line breaks of every kind become
 * " ↵ ", tabs a space, and other control characters, separators and bidirectional controls (escape sequences
 * included) the replacement character.
 *
 * @example
 * ```ts
 * sanitize("a\u001b[2Jb\nc"); // "a\uFFFD[2Jb ↵ c"
 * sanitize("ok\u2028fake line"); // "ok ↵ fake line"
 * ```
 * @param text untrusted text
 * @returns printable text without line breaks
 */
export function sanitize(text: string): string {
  return text.replace(LINE_BREAKS, " \u21b5 ").replace(/\t/g, " ").replace(UNSAFE, "\uFFFD");
}

/**
 * A nick from the server or a peer as shown: sanitized, runs of white space collapsed to one space and trimmed (so
 * padding cannot push text onto a row of its own), and cut to a sane length.
 *
 * @example
 * ```ts
 * displayNick("dave     23:59:59 <carol>"); // "dave 23:59:59 <carol>"
 * ```
 * @param nick untrusted nick
 * @returns the nick to show
 */
export function displayNick(nick: string): string {
  const shown = sanitize(nick).replace(/\s+/g, " ").trim();
  const chars = [...shown];
  return chars.length > MAX_SHOWN_NICK ? chars.slice(0, MAX_SHOWN_NICK - 1).join("") + "…" : shown;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * The columns a user-perceived character takes, erring on the wide side: ASCII and the Latin, Greek and Cyrillic
 * blocks take one, everything else (CJK, emoji, scripts whose width terminals disagree on) is counted as two. Wrapping
 * by it can end a row early but never lets the terminal wrap a row itself.
 */
function graphemeWidth(grapheme: string): number {
  const cp = grapheme.codePointAt(0)!;
  return cp < 0x0300 || (cp >= 0x0370 && cp < 0x0530) ? 1 : 2;
}

/**
 * The columns text takes on a terminal, erring on the wide side (see {@link wrapRows}).
 *
 * @example
 * ```ts
 * displayWidth("héllo"); // 5
 * displayWidth("日本"); // 4
 * ```
 * @param text sanitized text (no control characters)
 * @returns the width in columns
 */
export function displayWidth(text: string): number {
  let width = 0;
  for (const { segment } of graphemes.segment(text)) width += graphemeWidth(segment);
  return width;
}

/**
 * Wraps a line at word boundaries into rows narrower than the terminal; every row after the first starts with
 * `indent` spaces, so a wrapped message never has a row that looks like the start of a message. Widths err on the
 * wide side, so a row may end early but the terminal never wraps one by itself.
 *
 * @example
 * ```ts
 * wrapRows("09:00:00 <bob> ", "a long text", { width: 20, indent: 9 }); // ["09:00:00 <bob> a", "         long text"]
 * ```
 * @param head what starts the first row (the time and nick), kept whole
 * @param text sanitized text to wrap after it
 * @param options.width the terminal's columns
 * @param options.indent spaces before each continuation row
 * @returns the rows, without line breaks
 */
export function wrapRows(head: string, text: string, options: { width: number; indent: number }): string[] {
  // One column stays free: a row that fills the last column leaves terminals in a pending-wrap state.
  const max = Math.max(options.indent + 8, options.width - 1);
  const pad = " ".repeat(options.indent);
  const rows: string[] = [];
  let row = head;
  let used = displayWidth(head);
  const newRow = () => {
    rows.push(row.trimEnd());
    row = pad;
    used = options.indent;
  };
  for (const token of text.split(/( +)/)) {
    if (token === "") continue;
    const width = displayWidth(token);
    if (token.startsWith(" ")) {
      if (used + width <= max) {
        row += token;
        used += width;
      } else if (used > options.indent) {
        newRow();
      }
      continue;
    }
    if (used + width > max && used > options.indent && width <= max - options.indent) newRow();
    if (used + width <= max) {
      row += token;
      used += width;
      continue;
    }
    for (const { segment } of graphemes.segment(token)) {
      const w = graphemeWidth(segment);
      if (used + w > max) newRow();
      row += segment;
      used += w;
    }
  }
  // A row of nothing but the indent (the text ended in spaces at a break) is not worth a row.
  if (rows.length === 0 || row.trim() !== "") rows.push(row.trimEnd());
  return rows;
}

/**
 * Cuts text to one row of the terminal, with an ellipsis when it is cut.
 *
 * @example
 * ```ts
 * fitRow("a very long status line", 10); // "a very …"
 * ```
 * @param text sanitized text
 * @param width the terminal's columns
 * @returns the row
 */
export function fitRow(text: string, width: number): string {
  const max = Math.max(3, width - 1);
  if (displayWidth(text) <= max) return text;
  let out = "";
  let used = 0;
  for (const { segment } of graphemes.segment(text)) {
    const w = graphemeWidth(segment);
    if (used + w > max - graphemeWidth("…")) break;
    out += segment;
    used += w;
  }
  return out + "…";
}

/**
 * The local time of day of a timestamp, as HH:MM:SS.
 *
 * @example
 * ```ts
 * clockTime(Date.now()); // "14:03:59"
 * ```
 * @param ts milliseconds since the epoch
 * @returns the time
 */
export function clockTime(ts: number): string {
  const d = new Date(ts);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

/**
 * The local calendar day of a timestamp, as YYYY-MM-DD.
 *
 * @example
 * ```ts
 * localDay(new Date(2026, 2, 2, 23, 59).getTime()); // "2026-03-02"
 * ```
 * @param ts milliseconds since the epoch
 * @returns the day
 */
export function localDay(ts: number): string {
  const d = new Date(ts);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/**
 * The line that starts a new day in a conversation: `-- Monday, 2026-03-02` (local time).
 *
 * @example
 * ```ts
 * formatDay(new Date(2026, 2, 2, 9).getTime(), { colour: false }); // "-- Monday, 2026-03-02"
 * ```
 * @param ts a moment of that day
 * @param options.colour dim it
 * @returns the row
 */
export function formatDay(ts: number, options: { colour: boolean }): string {
  return formatStatus(`${WEEKDAYS[new Date(ts).getDay()]}, ${localDay(ts)}`, options);
}

/**
 * The ANSI colour of a nick: the same nick always gets the same colour.
 *
 * @example
 * ```ts
 * nickColour("alice") === nickColour("alice"); // true
 * ```
 * @param nick the nick
 * @returns a 256-colour palette index
 */
export function nickColour(nick: string): number {
  // FNV-1a over the UTF-16 code units: cheap, stable across runs and platforms.
  let h = 0x811c9dc5;
  for (let i = 0; i < nick.length; i++) h = Math.imul(h ^ nick.charCodeAt(i), 0x01000193) >>> 0;
  return NICK_COLOURS[h % NICK_COLOURS.length];
}

/** Wraps text in a 256-colour foreground escape (or dim, bold, red), or returns it unchanged when colour is off. */
function paint(text: string, colour: number | "dim" | "bold" | "red", on: boolean): string {
  if (!on) return text;
  const code = colour === "dim" ? "2" : colour === "bold" ? "1" : colour === "red" ? "31" : `38;5;${colour}`;
  return `\x1b[${code}m${text}\x1b[0m`;
}

/** Columns of the time and the space after it: continuation rows of a message are indented by this much. */
export const MESSAGE_INDENT = 9;

/** What {@link formatMessage} shows of a message. */
export type MessageLine = Pick<ShownMessage, "ts" | "from" | "text" | "history"> & { type: string };

/** How {@link formatMessage} shows a message. */
export interface MessageStyle {
  /** Use ANSI colours (history and pending dimmed, nick coloured, a failure in red, a mention bold yellow). */
  colour: boolean;
  /** The terminal's columns: wrap to them, and start a row for each line break of the text (default: one line). */
  width?: number;
  /** Not yet stored by the server. */
  pending?: boolean;
  /** Given up, for this reason. */
  failed?: string;
  /** It names the reader: highlighted (bold even without colour). */
  mention?: boolean;
  /** The reader's clock: a message from another day than this one shows its date. */
  now?: number;
}

/**
 * One message as it is shown: `HH:MM:SS <nick> text` (`HH:MM:SS * nick text` for an action), with its date first when
 * it is from another day than `now`. With a width, long text wraps into indented rows, and each line of a multi-line
 * message starts an indented row of its own; without one, line breaks are neutralized and it is one line. This
 * client's own message shows `--:--:--` for its time while it waits for the server to store it, and its reason when
 * it was given up.
 *
 * @example
 * ```ts
 * formatMessage({ ts, from: "alice", type: "text", text: "hi", history: false }, { colour: false }); // "14:03:59 <alice> hi"
 * ```
 * @param message the message
 * @param options how to show it
 * @returns the rows, joined by newlines (one row without a width)
 */
export function formatMessage(message: MessageLine, options: MessageStyle): string {
  const on = options.colour;
  const time = options.pending ? "--:--:--" : clockTime(message.ts);
  const date = !options.pending && options.now !== undefined && localDay(message.ts) !== localDay(options.now)
    ? `${localDay(message.ts)} `
    : "";
  const nick = displayNick(message.from);
  const parts = options.width === undefined ? [sanitize(message.text)] : message.text.split(/\r?\n/).map(sanitize);
  if (options.failed !== undefined) parts[parts.length - 1] += `  \u2717 not stored: ${sanitize(options.failed)}`;
  const action = message.type === "action";
  const head = action ? `${date}${time} * ${nick} ` : `${date}${time} <${nick}> `;
  const pad = " ".repeat(MESSAGE_INDENT);
  const width = options.width;
  const rows = width === undefined
    ? [head + parts[0]]
    : parts.flatMap((part, i) => wrapRows(i === 0 ? head : pad, part, { width, indent: MESSAGE_INDENT }));
  const tone = options.failed !== undefined
    ? "red"
    : options.pending
    ? "dim"
    : options.mention
    ? "mention"
    : message.history
    ? "dim"
    : undefined;
  if (!on) return (tone === "mention" ? rows.map((row) => `\x1b[1m${row}\x1b[0m`) : rows).join("\n");
  // The nick's colour ends with a full reset, which also ends the line's tone: start it again after the nick.
  const at = date.length + time.length + (action ? 3 : 2);
  const again = tone === undefined ? "" : TONES[tone];
  rows[0] = rows[0].slice(0, at) + paint(nick, nickColour(message.from), true) + again +
    rows[0].slice(at + nick.length);
  return rows.map((row) => tone ? `${TONES[tone]}${row}\x1b[0m` : row).join("\n");
}

/** The escapes that start each tone of a message row. */
const TONES = { dim: "\x1b[2m", red: "\x1b[31m", mention: "\x1b[1;33m" };

/**
 * One message as a JSON line for scripts: {room, seq, from, ts, id, type, text, history}.
 *
 * @example
 * ```ts
 * formatJson(message); // '{"room":"general","seq":7,"from":"alice",...}'
 * ```
 * @param message the message
 * @returns the JSON text, without a newline
 */
export function formatJson(message: ShownMessage): string {
  const { room, seq, from, ts, id, type, text, history } = message;
  return JSON.stringify({ room, seq, from, ts, id, type, text, history });
}

/**
 * A status line (connection, presence, warnings), marked so it cannot be mistaken for a message; with a width, long
 * text wraps into rows indented under the text. With a time (presence), the time comes first: `09:12:03 -- bob
 * joined #general`.
 *
 * @example
 * ```ts
 * formatStatus("bob joined", { colour: false }); // "-- bob joined"
 * ```
 * @param text the status, sanitized here
 * @param options.colour dim it (a warning: bold red)
 * @param options.warning mark it as a warning instead
 * @param options.width the terminal's columns: wrap to them (default: one line)
 * @param options.ts the moment it tells of, shown as HH:MM:SS before it
 * @returns the rows, joined by newlines
 */
export function formatStatus(
  text: string,
  options: { colour: boolean; warning?: boolean; width?: number; ts?: number },
): string {
  const head = (options.ts === undefined ? "" : `${clockTime(options.ts)} `) + (options.warning ? "!! " : "-- ");
  const rows = options.width === undefined
    ? [head + sanitize(text)]
    : wrapRows(head, sanitize(text), { width: options.width, indent: head.length });
  if (!options.colour) return rows.join("\n");
  return rows.map((row) => options.warning ? `\x1b[1;31m${row}\x1b[0m` : paint(row, "dim", true)).join("\n");
}
