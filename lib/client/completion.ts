/**
 * Tab completion of the line being typed: a command name at the start of a line (`/jo` → `/join `), a command's
 * argument of the kind the command table names (a nick, a conversation, a command), and otherwise a nick of the
 * current conversation (`ali` → `alice: ` at the start of a line, `alice ` elsewhere). With several matches, Tab
 * again goes on to the next one (as irssi and WeeChat do). Pure: no terminal I/O.
 *
 * @module
 */

/** What an argument completes to (see commands.ts `Command.complete`). */
export type CompletionKind = "nick" | "conversation" | "command";

/** Where completions come from. */
export interface CompletionSources {
  /** Command names, without the slash. */
  commands: readonly string[];
  /** What the first argument of a command completes to, if anything. */
  argumentOf(command: string): CompletionKind | undefined;
  /** Nicks of the current conversation (this client's own left out). */
  nicks: readonly string[];
  /** Conversation names as `/switch` takes them (`#ops`, `@bob`). */
  conversations: readonly string[];
}

/** A completed line. */
export interface Completed {
  /** The new text. */
  text: string;
  /** The new cursor offset. */
  cursor: number;
}

/** A completion shown, and the other matches Tab goes on to. */
interface Cycle {
  candidates: string[];
  index: number;
  /** Where the completed word starts. */
  start: number;
  /** What follows a completed name (": " for a nick at the start of a line, else " "). */
  suffix: string;
  /** The text after the cursor when Tab was first pressed. */
  rest: string;
  /** The line as the last completion left it. */
  shown: Completed;
}

function byName(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Completes words; remembers the last completion so that Tab again cycles through the other matches.
 *
 * @example
 * ```ts
 * const completer = new Completer();
 * const sources = { commands: ["join", "who"], argumentOf: () => undefined, nicks: ["alice", "albert"], conversations: [] };
 * completer.complete("ali", 3, sources); // { text: "alice: ", cursor: 7 }
 * ```
 */
export class Completer {
  #cycle: Cycle | undefined;

  /**
   * Completes the word before the cursor.
   *
   * @param text the line
   * @param cursor the cursor offset
   * @param sources the names to complete from
   * @returns the completed line, or undefined when nothing matches
   */
  complete(text: string, cursor: number, sources: CompletionSources): Completed | undefined {
    const cycle = this.#cycle;
    if (cycle && cycle.shown.text === text && cycle.shown.cursor === cursor && cycle.candidates.length > 1) {
      cycle.index = (cycle.index + 1) % cycle.candidates.length;
      return this.#show(text.slice(0, cycle.start), cycle);
    }
    this.#cycle = undefined;
    const before = text.slice(0, cursor);
    const start = before.search(/\S*$/);
    const word = before.slice(start);
    const found = this.#candidates(before, start, word, sources);
    if (!found || found.candidates.length === 0) return undefined;
    const next = { ...found, index: 0, start, rest: text.slice(cursor), shown: { text, cursor } };
    this.#cycle = next;
    return this.#show(text.slice(0, start), next);
  }

  /** Forgets the cycle (any key but Tab). */
  reset(): void {
    this.#cycle = undefined;
  }

  #show(head: string, cycle: Cycle): Completed {
    const insert = cycle.candidates[cycle.index] + cycle.suffix;
    // Do not double a space that is already there.
    const rest = cycle.suffix.endsWith(" ") && cycle.rest.startsWith(" ") ? cycle.rest.slice(1) : cycle.rest;
    const shown = { text: head + insert + rest, cursor: head.length + insert.length };
    cycle.shown = shown;
    return shown;
  }

  #candidates(
    before: string,
    start: number,
    word: string,
    sources: CompletionSources,
  ): { candidates: string[]; suffix: string } | undefined {
    const matching = (names: readonly string[], prefix: string) => {
      const lower = prefix.toLowerCase();
      return [...new Set(names)].filter((n) => n.toLowerCase().startsWith(lower)).sort(byName);
    };
    if (start === 0 && word.startsWith("/")) {
      return { candidates: matching(sources.commands, word.slice(1)).map((c) => `/${c}`), suffix: " " };
    }
    const command = /^\/(\S+)\s+(\S*)$/.exec(before);
    if (command) {
      const kind = sources.argumentOf(command[1].toLowerCase());
      if (kind === "command") return { candidates: matching(sources.commands, word), suffix: " " };
      if (kind === "conversation") {
        return { candidates: matching(sources.conversations, word), suffix: " " };
      }
      if (kind === "nick") return { candidates: matching(sources.nicks, word), suffix: " " };
      if (before.startsWith("/") && !before.startsWith("//")) return undefined;
    }
    if (word === "") return undefined;
    return { candidates: matching(sources.nicks, word), suffix: start === 0 ? ": " : " " };
  }
}
