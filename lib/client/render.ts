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

// C0 controls, DEL, C1 controls, and the bidirectional overrides and isolates (which can disguise text).
// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Makes untrusted text safe to print on one terminal line: newlines become ↵, tabs a space, and other control
 * characters (escape sequences included) the replacement character.
 *
 * @example
 * ```ts
 * sanitize("a\u001b[2Jb\nc"); // "a\uFFFD[2Jb ↵ c"
 * ```
 * @param text untrusted text
 * @returns printable text without line breaks
 */
export function sanitize(text: string): string {
  return text.replace(/\r?\n/g, " \u21b5 ").replace(/\t/g, " ").replace(UNSAFE, "\uFFFD");
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

/** Wraps text in a 256-colour foreground escape, or returns it unchanged when colour is off. */
function paint(text: string, colour: number | "dim" | "bold", on: boolean): string {
  if (!on) return text;
  const code = colour === "dim" ? "2" : colour === "bold" ? "1" : `38;5;${colour}`;
  return `\x1b[${code}m${text}\x1b[0m`;
}

/**
 * One message as a line.
 *
 * @example
 * ```ts
 * formatMessage({ ts, from: "alice", type: "text", text: "hi", ... }, { colour: false }); // "14:03:59 <alice> hi"
 * ```
 * @param message the message
 * @param options.colour use ANSI colours (history dimmed, nick coloured)
 * @returns the line, without a newline
 */
export function formatMessage(message: ShownMessage, options: { colour: boolean }): string {
  const on = options.colour;
  const time = clockTime(message.ts);
  const dim = message.history && on;
  // The nick's colour ends with a full reset, which also ends the dimming of a history line: dim again after it.
  const from = paint(sanitize(message.from), nickColour(message.from), on) + (dim ? "\x1b[2m" : "");
  const text = sanitize(message.text);
  const line = message.type === "action" ? `${time} * ${from} ${text}` : `${time} <${from}> ${text}`;
  return dim ? paint(line, "dim", on) : line;
}

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
 * A status line (connection, presence, warnings), marked so it cannot be mistaken for a message.
 *
 * @example
 * ```ts
 * formatStatus("bob joined", { colour: false }); // "-- bob joined"
 * ```
 * @param text the status, sanitized here
 * @param options.colour dim it
 * @param options.warning mark it as a warning instead
 * @returns the line
 */
export function formatStatus(text: string, options: { colour: boolean; warning?: boolean }): string {
  const line = `${options.warning ? "!!" : "--"} ${sanitize(text)}`;
  if (!options.colour) return line;
  return options.warning ? `\x1b[1;31m${line}\x1b[0m` : paint(line, "dim", true);
}
