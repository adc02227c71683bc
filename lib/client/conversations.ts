/**
 * The conversations the interactive client shows: rooms and direct conversations with a person, each with its own
 * buffer of lines, unread and mention counts, a mark of what was seen, its members (for completion) and its topic,
 * and which one is current. Lines of a conversation that is not current are kept and counted, never shown in
 * another; switching to it gives what arrived since it was last looked at, after a marker line. A line from another
 * day than the one before it gets a day line first.
 *
 * No terminal I/O and no formatting of rows: terminal.ts renders the lines this returns and prints them.
 *
 * @module
 */

import type { Mark, Trust } from "./events.ts";
import type { OutboxItem } from "./outbox.ts";
import { localDay } from "./render.ts";

/** A room, or a direct conversation with one person. */
export type ConversationKind = "room" | "direct";

/** One line of a conversation's buffer. */
export type ConversationLine =
  /** A message (this client's own once stored, or `failed` when given up). */
  | {
    kind: "message";
    ts: number;
    from: string;
    /** "text", "action", or another plaintext type a newer session shows. */
    type: string;
    text: string;
    history: boolean;
    /** It names this client's user (or is a direct message to them). */
    mention: boolean;
    /** This client's own message. */
    own: boolean;
    /** Given up, with the reason. */
    failed?: string;
    /** How far the sender is trusted (tags and the ✓ mark). */
    trust?: Trust;
    /** What the receiver noticed about it. */
    marks?: readonly Mark[];
  }
  /** A status line; `ts` when it tells of a moment (presence), shown with its time. */
  | { kind: "status"; text: string; warning?: boolean; ts?: number }
  /** The start of a new day (local time) in this conversation. */
  | { kind: "day"; ts: number };

/** Lines kept per conversation; older ones are dropped. */
const KEEP_LINES = 2_000;
/** Lines already seen shown again, for context, when switching to a conversation. */
const CONTEXT_LINES = 5;

/**
 * The key of a conversation: `#room` or `@nick`.
 *
 * @example
 * ```ts
 * conversationKey("room", "ops"); // "#ops"
 * conversationKey("direct", "bob"); // "@bob"
 * ```
 * @param kind room or direct
 * @param name the room or the person's nick
 * @returns the key, also the label shown
 */
export function conversationKey(kind: ConversationKind, name: string): string {
  return (kind === "room" ? "#" : "@") + name;
}

const mentionPatterns = new Map<string, RegExp>();

/**
 * Whether a text names a nick as a word, in any case: `Alice, look`, `@alice`, `ALICE:` name alice; `alicex` and
 * `malice` do not.
 *
 * @example
 * ```ts
 * namesNick("hey ALICE: lunch?", "alice"); // true
 * namesNick("malice", "alice"); // false
 * ```
 * @param text the message text
 * @param nick the nick
 * @returns whether it is a mention
 */
export function namesNick(text: string, nick: string): boolean {
  if (nick === "") return false;
  let pattern = mentionPatterns.get(nick);
  if (!pattern) {
    const escaped = nick.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
    pattern = new RegExp(`(?<![\\p{L}\\p{N}\\p{M}_])${escaped}(?![\\p{L}\\p{N}\\p{M}_])`, "iu");
    if (mentionPatterns.size > 16) mentionPatterns.clear();
    mentionPatterns.set(nick, pattern);
  }
  return pattern.test(text);
}

/** One conversation. */
export class Conversation {
  /** Room or direct. */
  readonly kind: ConversationKind;
  /** The room's name, or the person's nick. */
  readonly name: string;
  /** `#room` or `@nick`: its key and label. */
  readonly key: string;
  /** The buffer, oldest first (at most KEEP_LINES). */
  readonly lines: ConversationLine[] = [];
  /** Index in `lines` of the first line not yet seen. */
  seen = 0;
  /** Messages from others since it was last looked at. */
  unread = 0;
  /** Of those, the ones that name this client's user. */
  mentions = 0;
  /** Lines dropped from the front of the buffer since it was last looked at. */
  dropped = 0;
  /** The room's topic, when known. */
  topic: string | undefined;
  /** Who is in it, for completion. */
  readonly members = new Set<string>();
  /** This client's messages given up here, in order, for /retry. */
  readonly failed: OutboxItem[] = [];
  /** The day of the last line with a time. */
  lastDay: string | undefined;

  /**
   * @param kind room or direct
   * @param name the room's name or the person's nick
   */
  constructor(kind: ConversationKind, name: string) {
    this.kind = kind;
    this.name = name;
    this.key = conversationKey(kind, name);
  }
}

/** What the status line shows of one conversation. */
export interface ConversationSummary {
  /** `#room` or `@nick`. */
  key: string;
  /** Its number for Alt-1..9 (from 1). */
  index: number;
  /** Messages not yet seen. */
  unread: number;
  /** Of those, mentions of this client's user. */
  mentions: number;
  /** Whether it is the current one. */
  current: boolean;
  /** The room's topic. */
  topic?: string;
}

/** What {@link Conversations.add} did with a line. */
export interface Added {
  /** Lines to print now (a day line first when the day changed): empty unless the conversation is current. */
  print: ConversationLine[];
}

/**
 * Every conversation, in the order opened, and the current one.
 *
 * @example
 * ```ts
 * const view = new Conversations();
 * view.open("room", "general");
 * view.switchTo("#general");
 * view.open("room", "ops");
 * view.add("#ops", { kind: "message", ts: Date.now(), from: "bob", type: "text", text: "hi", history: false, mention: false, own: false });
 * view.summary(); // [{ key: "#general", current: true, … }, { key: "#ops", unread: 1, … }]
 * ```
 */
export class Conversations {
  #list: Conversation[] = [];
  #current: Conversation | undefined;
  #keep: number;
  #context: number;

  /**
   * @param options.keep lines kept per conversation (default 2000)
   * @param options.context seen lines shown again when switching (default 5)
   */
  constructor(options: { keep?: number; context?: number } = {}) {
    this.#keep = options.keep ?? KEEP_LINES;
    this.#context = options.context ?? CONTEXT_LINES;
  }

  /** The current conversation. */
  get current(): Conversation | undefined {
    return this.#current;
  }

  /** Every conversation, in the order opened. */
  get list(): readonly Conversation[] {
    return this.#list;
  }

  /**
   * A conversation by key.
   *
   * @param key `#room` or `@nick`
   * @returns it, or undefined
   */
  get(key: string): Conversation | undefined {
    return this.#list.find((c) => c.key === key);
  }

  /**
   * Opens a conversation (or returns the one already open). It does not become current.
   *
   * @param kind room or direct
   * @param name the room's name or the person's nick
   * @returns the conversation
   */
  open(kind: ConversationKind, name: string): Conversation {
    const key = conversationKey(kind, name);
    const found = this.get(key);
    if (found) return found;
    const conversation = new Conversation(kind, name);
    this.#list.push(conversation);
    return conversation;
  }

  /**
   * Closes a conversation and forgets its buffer. When it was current, the one before it (or after) becomes current
   * and what to print for that switch is returned.
   *
   * @param key the conversation
   * @returns the lines of the switch, when another conversation became current
   */
  close(key: string): ConversationLine[] {
    const at = this.#list.findIndex((c) => c.key === key);
    if (at < 0) return [];
    const [closed] = this.#list.splice(at, 1);
    if (closed !== this.#current) return [];
    this.#current = undefined;
    const next = this.#list[Math.max(0, at - 1)];
    return next ? this.switchTo(next.key) ?? [] : [];
  }

  /**
   * Adds a line to a conversation. In the current one it is seen at once (and returned to print); elsewhere it is
   * kept, and a message from someone else counts as unread (and as a mention when it is one). History replayed on
   * join is kept but not counted.
   *
   * @param key the conversation (opened if needed: a room by `#`, a person by `@`)
   * @param line the line
   * @returns what to print now
   */
  add(key: string, line: ConversationLine): Added {
    const conversation = this.get(key) ?? this.open(key.startsWith("@") ? "direct" : "room", key.slice(1));
    const lines: ConversationLine[] = [];
    const ts = line.kind === "message" || line.kind === "status" ? line.ts : undefined;
    if (ts !== undefined) {
      const day = localDay(ts);
      if (conversation.lastDay !== undefined && day !== conversation.lastDay) lines.push({ kind: "day", ts });
      conversation.lastDay = day;
    }
    lines.push(line);
    conversation.lines.push(...lines);
    const over = conversation.lines.length - this.#keep;
    if (over > 0) {
      conversation.lines.splice(0, over);
      conversation.dropped += Math.max(0, over - conversation.seen);
      conversation.seen = Math.max(0, conversation.seen - over);
    }
    if (conversation === this.#current) {
      conversation.seen = conversation.lines.length;
      return { print: lines };
    }
    if (line.kind === "message" && !line.own && !line.history) {
      conversation.unread++;
      if (line.mention) conversation.mentions++;
    }
    return { print: [] };
  }

  /**
   * Makes a conversation current and says what to show: a line naming it, the last few lines already seen there (for
   * context), then, after a marker line, every line that arrived since it was last looked at.
   *
   * @param key the conversation
   * @returns the lines to print, or undefined when there is no such conversation
   */
  switchTo(key: string): ConversationLine[] | undefined {
    const conversation = this.get(key);
    if (!conversation) return undefined;
    this.#current = conversation;
    const { lines, seen, unread } = conversation;
    const out: ConversationLine[] = [{ kind: "status", text: `now in ${conversation.key}` }];
    if (conversation.topic !== undefined) out.push({ kind: "status", text: `topic: ${conversation.topic}` });
    out.push(...lines.slice(Math.max(0, seen - this.#context), seen));
    // The marker counts what the status line counted: messages from others (the user's own lines, presence and notices
    // are shown after it, but are not news).
    if (unread > 0 || conversation.dropped > 0) {
      const lost = conversation.dropped > 0 ? ` (${conversation.dropped} older ones no longer kept)` : "";
      const count = `${unread} message${unread === 1 ? "" : "s"}`;
      out.push({ kind: "status", text: `new since you last looked: ${count}${lost}` });
    }
    out.push(...lines.slice(seen));
    conversation.seen = lines.length;
    conversation.unread = 0;
    conversation.mentions = 0;
    conversation.dropped = 0;
    return out;
  }

  /**
   * The key of the conversation with a number (Alt-1..9).
   *
   * @param index from 1
   * @returns its key, or undefined
   */
  keyAt(index: number): string | undefined {
    return this.#list[index - 1]?.key;
  }

  /**
   * The key of the next (or previous) conversation after the current one, wrapping around (Ctrl-N, Ctrl-P).
   *
   * @param step 1 for the next, -1 for the previous
   * @returns its key, or undefined when there is none other
   */
  nextKey(step: 1 | -1): string | undefined {
    const n = this.#list.length;
    if (n < 2 || !this.#current) return undefined;
    const at = this.#list.indexOf(this.#current);
    return this.#list[(at + step + n) % n].key;
  }

  /**
   * The conversation a name given by the user means: `#ops`, `ops`, `@bob`, or a number.
   *
   * @param name what the user typed
   * @returns its key, or undefined
   */
  find(name: string): string | undefined {
    if (/^[1-9][0-9]*$/.test(name)) return this.keyAt(Number(name));
    if (name.startsWith("#") || name.startsWith("@")) return this.get(name)?.key;
    return this.get(conversationKey("room", name))?.key ?? this.get(conversationKey("direct", name))?.key;
  }

  /**
   * Empties a conversation's buffer (/clear).
   *
   * @param key the conversation
   */
  clear(key: string): void {
    const conversation = this.get(key);
    if (!conversation) return;
    conversation.lines.length = 0;
    conversation.seen = 0;
    conversation.unread = 0;
    conversation.mentions = 0;
    conversation.dropped = 0;
  }

  /**
   * What the status line shows: every conversation with its number and counts, the current one marked.
   *
   * @returns one summary per conversation, in order
   */
  summary(): ConversationSummary[] {
    return this.#list.map((c, i) => ({
      key: c.key,
      index: i + 1,
      unread: c.unread,
      mentions: c.mentions,
      current: c === this.#current,
      ...(c.topic === undefined ? {} : { topic: c.topic }),
    }));
  }
}
