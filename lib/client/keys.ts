/**
 * Terminal input decoded into keys: runs of plain text, pieces of a bracketed paste, and named keys (Enter, arrows,
 * Ctrl and Alt combinations) from control characters and escape sequences. Sequences split across reads are put
 * together; escape sequences the client does not use are dropped, never inserted as text.
 *
 * A run of plain text comes out as one key however long it is, so a paste that the terminal does not bracket costs
 * one step per read, not one per character.
 *
 * @module
 */

/** One decoded key. */
export type Key =
  /** Printable text typed (or pasted without bracketed paste): no control characters. */
  | { kind: "text"; text: string }
  /**
   * A piece of a bracketed paste (`ESC[200~` … `ESC[201~`): line breaks as `\n`, tabs kept, other control characters
   * dropped. A long paste comes in several pieces; `end` marks the last.
   */
  | { kind: "paste"; text: string; end: boolean }
  /** A named key with its modifiers: enter, tab, backspace, delete, left, right, up, down, home, end, a–z… */
  | { kind: "key"; name: string; ctrl: boolean; meta: boolean; shift: boolean };

const PASTE_START = "\x1b[200~";
const PASTE_END = "\x1b[201~";
/** An escape sequence longer than this without its final byte is garbage, not a sequence still arriving. */
const MAX_SEQUENCE = 32;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;
// deno-lint-ignore no-control-regex
const PASTE_DROPPED = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g;

/** Final bytes of CSI and SS3 sequences that name keys. */
const FINAL_KEYS: Record<string, string> = {
  A: "up",
  B: "down",
  C: "right",
  D: "left",
  H: "home",
  F: "end",
  Z: "tab",
};
/** `ESC [ n ~` sequences. */
const TILDE_KEYS: Record<string, string> = {
  "1": "home",
  "2": "insert",
  "3": "delete",
  "4": "end",
  "5": "pageup",
  "6": "pagedown",
  "7": "home",
  "8": "end",
};
/** Control characters 0x1c–0x1f, as Ctrl with these. */
const CONTROL_PUNCTUATION = ["\\", "]", "^", "_"];

function named(name: string, mods: { ctrl?: boolean; meta?: boolean; shift?: boolean } = {}): Key {
  return { kind: "key", name, ctrl: mods.ctrl ?? false, meta: mods.meta ?? false, shift: mods.shift ?? false };
}

/** The modifiers of an xterm-style parameter (`1;5C`: 5 = 1 + Ctrl(4)). */
function modifiers(param: string | undefined): { ctrl: boolean; meta: boolean; shift: boolean } {
  const bits = Math.max(0, Number(param ?? "1") - 1);
  return { shift: (bits & 1) !== 0, meta: (bits & 2) !== 0, ctrl: (bits & 4) !== 0 };
}

/** A control character (or DEL) as the key it is. */
function controlKey(code: number, meta: boolean): Key {
  if (code === 0x0d || code === 0x0a) return named("enter", { meta });
  if (code === 0x09) return named("tab", { meta });
  if (code === 0x7f || code === 0x08) return named("backspace", { meta });
  if (code === 0x1b) return named("escape", { meta });
  if (code === 0x00) return named("space", { ctrl: true, meta });
  if (code >= 0x1c && code <= 0x1f) return named(CONTROL_PUNCTUATION[code - 0x1c], { ctrl: true, meta });
  return named(String.fromCharCode(code + 0x60), { ctrl: true, meta });
}

/**
 * Decodes terminal input, read by read.
 *
 * @example
 * ```ts
 * const keys = new KeyDecoder();
 * keys.push("hi\r"); // [{ kind: "text", text: "hi" }, { kind: "key", name: "enter", … }]
 * keys.push("\x1b[200~a\rb\x1b[201~"); // [{ kind: "paste", text: "a\nb", end: true }]
 * ```
 */
export class KeyDecoder {
  #utf8 = new TextDecoder("utf-8");
  /** The start of an escape sequence that the next read should finish. */
  #pending = "";
  #pasting = false;
  /** The last character handled was CR: an LF right after it is the same line break. */
  #afterCr = false;

  /** Whether an escape sequence (or a lone ESC) is waiting for more input. */
  get waiting(): boolean {
    return this.#pending !== "";
  }

  /** Whether a bracketed paste has started and not yet ended. */
  get pasting(): boolean {
    return this.#pasting;
  }

  /**
   * Decodes one read.
   *
   * @param chunk the bytes (or text) the terminal delivered
   * @returns the keys, in order
   */
  push(chunk: Uint8Array | string): Key[] {
    const text = typeof chunk === "string" ? chunk : this.#utf8.decode(chunk, { stream: true });
    const s = this.#pending + text;
    this.#pending = "";
    const out: Key[] = [];
    let i = 0;
    while (i < s.length) {
      i = this.#pasting ? this.#pasted(s, i, out) : this.#typed(s, i, out);
    }
    return out;
  }

  /**
   * Ends a wait for the rest of an escape sequence (the caller's timer ran out): a lone ESC is the Escape key, any
   * other unfinished sequence is dropped.
   *
   * @returns the keys, if any
   */
  flush(): Key[] {
    const pending = this.#pending;
    this.#pending = "";
    return pending === "\x1b" ? [named("escape")] : [];
  }

  /** Inside a bracketed paste: everything up to the end marker is pasted text. */
  #pasted(s: string, i: number, out: Key[]): number {
    const end = s.indexOf(PASTE_END, i);
    let stop = end < 0 ? s.length : end;
    if (end < 0) {
      // The end marker may be cut by the read: keep what could be its start for the next read.
      for (let k = PASTE_END.length - 1; k > 0; k--) {
        if (stop - k >= i && s.endsWith(PASTE_END.slice(0, k))) {
          stop -= k;
          this.#pending = s.slice(stop);
          break;
        }
      }
    }
    let piece = s.slice(i, stop);
    if (this.#afterCr && piece.startsWith("\n")) piece = piece.slice(1);
    if (piece !== "") this.#afterCr = piece.endsWith("\r");
    const clean = piece.replace(/\r\n?/g, "\n").replace(PASTE_DROPPED, "");
    if (end >= 0) {
      this.#pasting = false;
      this.#afterCr = false;
      out.push({ kind: "paste", text: clean, end: true });
      return end + PASTE_END.length;
    }
    if (clean !== "") out.push({ kind: "paste", text: clean, end: false });
    return s.length;
  }

  /** Outside a paste: a run of text, a control character, or an escape sequence. */
  #typed(s: string, i: number, out: Key[]): number {
    const code = s.charCodeAt(i);
    if (code >= 0x20 && code !== 0x7f && !(code >= 0x80 && code <= 0x9f)) {
      CONTROL.lastIndex = i;
      const next = CONTROL.exec(s);
      const stop = next ? next.index : s.length;
      out.push({ kind: "text", text: s.slice(i, stop) });
      this.#afterCr = false;
      return stop;
    }
    if (code >= 0x80) return i + 1; // a C1 control: never typed, dropped
    if (code === 0x1b) return this.#escape(s, i, out);
    const cr = this.#afterCr;
    this.#afterCr = code === 0x0d;
    if (code === 0x0a && cr) return i + 1;
    out.push(controlKey(code, false));
    return i + 1;
  }

  /** An escape sequence starting at `i`; an unfinished one waits for the next read. */
  #escape(s: string, i: number, out: Key[]): number {
    this.#afterCr = false;
    if (i + 1 >= s.length) {
      this.#pending = s.slice(i);
      return s.length;
    }
    const next = s[i + 1];
    if (next === "[") return this.#csi(s, i, out);
    if (next === "O") {
      if (i + 2 >= s.length) {
        this.#pending = s.slice(i);
        return s.length;
      }
      const name = FINAL_KEYS[s[i + 2]];
      if (name) out.push(named(name));
      return i + 3;
    }
    // ESC followed by a key: that key with Alt (Meta).
    const cp = s.codePointAt(i + 1)!;
    const width = cp > 0xffff ? 2 : 1;
    if (cp < 0x20 || cp === 0x7f) out.push(controlKey(cp, true));
    else out.push(named(String.fromCodePoint(cp).toLowerCase(), { meta: true, shift: next !== next.toLowerCase() }));
    return i + 1 + width;
  }

  #csi(s: string, i: number, out: Key[]): number {
    let k = i + 2;
    while (k < s.length) {
      const c = s.charCodeAt(k);
      if (c < 0x20 || c > 0x3f) break;
      k++;
    }
    if (k >= s.length) {
      // Still arriving, unless it is already too long to be a sequence.
      if (k - i <= MAX_SEQUENCE) this.#pending = s.slice(i);
      return s.length;
    }
    const final = s.charCodeAt(k);
    // Not a sequence (drop ESC [ and its parameters), or one too long to mean anything.
    if (final < 0x40 || final > 0x7e) return k;
    if (k - i > MAX_SEQUENCE) return k + 1;
    const params = s.slice(i + 2, k).split(";");
    const seq = s.slice(i, k + 1);
    if (seq === PASTE_START) {
      this.#pasting = true;
      this.#afterCr = false;
      return k + 1;
    }
    const letter = s[k];
    const name = letter === "~" ? TILDE_KEYS[params[0]] : FINAL_KEYS[letter];
    if (name) {
      const mods = modifiers(params[1]);
      out.push(named(name, letter === "Z" ? { shift: true } : mods));
    }
    return k + 1;
  }
}
