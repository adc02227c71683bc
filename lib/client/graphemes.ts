/**
 * User-perceived characters (grapheme clusters, `Intl.Segmenter`) and the terminal columns each one takes, as the
 * line editor needs them to move the cursor and place it on the screen: a flag or a ZWJ emoji is one character, East
 * Asian wide characters and emoji take two columns, combining marks none of their own.
 *
 * Printed rows are measured by render.ts, which errs on the wide side on purpose (a row ending early is harmless);
 * the input line needs the width the terminal really uses, or the cursor lands beside the character it is on.
 *
 * @module
 */

/** The one grapheme segmenter (the locale does not change grapheme boundaries). */
export const GRAPHEMES: Intl.Segmenter = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/**
 * East Asian Wide and Fullwidth blocks (Unicode's EastAsianWidth.txt, W and F, merged into blocks), sorted; emoji
 * with emoji presentation are found by their property instead.
 */
const WIDE: readonly [number, number][] = [
  [0x1100, 0x115f],
  [0x2329, 0x232a],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xa960, 0xa97f],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x16fe0, 0x16fe4],
  [0x17000, 0x18aff],
  [0x1b000, 0x1b2ff],
  [0x1f200, 0x1f2ff],
  [0x1f300, 0x1f64f],
  [0x1f900, 0x1f9ff],
  [0x20000, 0x2fffd],
  [0x30000, 0x3fffd],
];

const EMOJI_PRESENTATION = /\p{Emoji_Presentation}/u;
const PICTOGRAPHIC = /\p{Extended_Pictographic}/u;
/** Nothing but marks and format characters (a combining mark at the start of the line, a lone ZWJ). */
const NO_BASE = /^[\p{M}\p{Cf}]+$/u;

function isWide(cp: number): boolean {
  let lo = 0;
  let hi = WIDE.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [from, to] = WIDE[mid];
    if (cp < from) hi = mid - 1;
    else if (cp > to) lo = mid + 1;
    else return true;
  }
  return false;
}

/**
 * The columns one grapheme takes on a terminal: 2 for East Asian wide characters, emoji (with emoji presentation,
 * or text presentation turned into emoji by U+FE0F, and flags), 0 for a cluster of marks with no base, else 1.
 *
 * @example
 * ```ts
 * graphemeColumns("a"); // 1
 * graphemeColumns("日"); // 2
 * graphemeColumns("👩‍💻"); // 2
 * graphemeColumns("🇫🇷"); // 2
 * ```
 * @param grapheme one user-perceived character
 * @returns its width in columns
 */
export function graphemeColumns(grapheme: string): number {
  const cp = grapheme.codePointAt(0) ?? 0;
  if (cp < 0x300) return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ? 0 : grapheme.length === 1 ? 1 : emoji(grapheme);
  if (isWide(cp)) return 2;
  if (cp >= 0x1f1e6 && cp <= 0x1f1ff) return 2; // regional indicators: a flag
  if (NO_BASE.test(grapheme)) return 0;
  return emoji(grapheme);
}

function emoji(grapheme: string): number {
  if (EMOJI_PRESENTATION.test(grapheme)) return 2;
  if (grapheme.includes("\u20E3")) return 2; // a keycap: 1️⃣
  return grapheme.includes("\uFE0F") && PICTOGRAPHIC.test(grapheme) ? 2 : 1;
}

/**
 * The columns a text takes on a terminal (the sum of its graphemes' widths; no control characters expected).
 *
 * @example
 * ```ts
 * textColumns("#général> "); // 10
 * textColumns("日本"); // 4
 * ```
 * @param text the text
 * @returns its width in columns
 */
export function textColumns(text: string): number {
  if (/^[\x20-\x7e]*$/.test(text)) return text.length;
  let width = 0;
  for (const { segment } of GRAPHEMES.segment(text)) width += graphemeColumns(segment);
  return width;
}
