/**
 * The status line kept just above the input: the current conversation, the others with their numbers (Alt-1..9)
 * and unread counts, mentions marked with `!` and highlighted, and the current room's topic, cut to one row.
 *
 * `[1:#general] 2:#ops(3) 3:@bob(1!) · topic: deploy on friday`
 *
 * @module
 */

import type { ConversationSummary } from "./conversations.ts";
import { displayWidth, fitRow, sanitize } from "./render.ts";

/** One piece of the line and how it is highlighted. */
interface Piece {
  text: string;
  style: "current" | "unread" | "mention" | "plain" | "topic";
}

const STYLES: Record<Piece["style"], { colour: string; plain: string }> = {
  current: { colour: "\x1b[1;7m", plain: "\x1b[1m" },
  unread: { colour: "\x1b[36m", plain: "" },
  mention: { colour: "\x1b[1;31m", plain: "\x1b[1m" },
  plain: { colour: "\x1b[2m", plain: "" },
  topic: { colour: "\x1b[2m", plain: "" },
};

/**
 * The status line for a terminal of `width` columns.
 *
 * @example
 * ```ts
 * formatStatusLine([{ key: "#general", index: 1, unread: 0, mentions: 0, current: true },
 *   { key: "#ops", index: 2, unread: 3, mentions: 1, current: false }], { width: 80, colour: false });
 * // "[1:#general] 2:#ops(3!)"
 * ```
 * @param conversations the summaries, in order
 * @param options.width the terminal's columns (the line takes at most one fewer)
 * @param options.colour colour the pieces (without it, the current one and mentions are still bold)
 * @param options.highlight use bold at all (false when the output is not a terminal)
 * @returns the row
 */
export function formatStatusLine(
  conversations: readonly ConversationSummary[],
  options: { width: number; colour: boolean; highlight?: boolean },
): string {
  const pieces: Piece[] = [];
  let topic: string | undefined;
  for (const c of conversations) {
    const label = `${c.index}:${sanitize(c.key)}`;
    if (c.current) {
      pieces.push({ text: `[${label}]`, style: "current" });
      topic = c.topic;
    } else if (c.unread > 0) {
      const mark = c.mentions > 0 ? "!" : "";
      pieces.push({ text: `${label}(${c.unread}${mark})`, style: c.mentions > 0 ? "mention" : "unread" });
    } else {
      pieces.push({ text: label, style: "plain" });
    }
  }
  if (topic !== undefined && topic !== "") pieces.push({ text: `· topic: ${sanitize(topic)}`, style: "topic" });
  const max = Math.max(3, options.width - 1);
  let used = 0;
  let row = "";
  const paint = (piece: Piece, text: string) => {
    const style = STYLES[piece.style];
    const on = options.colour ? style.colour : options.highlight === false ? "" : style.plain;
    return on ? `${on}${text}\x1b[0m` : text;
  };
  for (const [i, piece] of pieces.entries()) {
    const space = i === 0 ? "" : " ";
    const width = displayWidth(space + piece.text);
    // One column stays free for the ellipsis that says more was cut, unless this is the last piece.
    const reserve = i < pieces.length - 1 ? 1 : 0;
    if (used + width + reserve <= max) {
      row += space + paint(piece, piece.text);
      used += width;
      continue;
    }
    const room = max - used - space.length;
    const text = displayWidth(piece.text) + 1 <= room ? piece.text + "…" : fitRow(piece.text, room);
    row += room >= 3 ? space + paint(piece, text) : "…";
    break;
  }
  return row;
}
