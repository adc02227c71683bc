/**
 * What the interactive client shows: session events turned into lines of their conversations (conversations.ts),
 * the current conversation printed on the screen, the others counted in the status line, mentions highlighted with
 * the bell, this client's lines pending in the footer until stored, and the connection state while offline.
 * Switching conversations, the prompt that names the current one, and what Tab completes from also live here.
 *
 * @module
 */

import type { ChatEvent, ChatMessage, ChatTarget } from "./chat_session.ts";
import type { CompletionSources } from "./completion.ts";
import { conversationKey, type ConversationLine, Conversations, namesNick } from "./conversations.ts";
import type { OutboxItem } from "./outbox.ts";
import type { InvitationShown } from "./events.ts";
import { displayNick, formatDay, formatMessage, formatStatus, noticeOf, shownNick } from "./render.ts";
import type { Screen } from "./screen.ts";
import { formatStatusLine } from "./status_line.ts";

/** This client's pending lines shown in the footer; more are counted in one row. */
const FOOTER_PENDING = 5;

/** How the view shows things. */
export interface ViewOptions {
  /** Use colour. */
  colour: boolean;
  /** Ring the terminal's bell when someone mentions the user. */
  bell: boolean;
  /** Bold for mentions even without colour (default true; false when the output is not a terminal). */
  highlight?: boolean;
  /** The clock (tests set another): presence times, and which day is today. */
  now?: () => number;
}

/** The room an invitation is to (its body is the room's secrets: only the name is read, never shown otherwise). */
function invitedRoom(item: OutboxItem): string | undefined {
  if (item.text.type !== "invite") return undefined;
  const room = (JSON.parse(item.text.body) as { room?: unknown }).room;
  return typeof room === "string" ? room : undefined;
}

/**
 * The conversation an outbox item belongs to. An invitation belongs to the room it is to (where /invite was typed),
 * not to a direct conversation with the person invited.
 */
function keyOfItem(item: OutboxItem): string {
  const invited = invitedRoom(item);
  if (invited !== undefined) return conversationKey("room", invited);
  return item.to !== undefined ? conversationKey("direct", item.to) : conversationKey("room", item.room);
}

/** Where a notice about a room goes: that room's conversation (or the current one). */
function roomOf(event: ChatEvent): string | undefined {
  const room = (event as { room?: unknown }).room;
  return typeof room === "string" ? conversationKey("room", room) : undefined;
}

/**
 * The conversations on the screen.
 *
 * @example
 * ```ts
 * const view = new ConversationView(screen, { colour: true, bell: true });
 * view.nick = "alice";
 * view.joined("general", { members: ["alice", "bob"] });
 * session.onEvent = (event) => view.onEvent(event);
 * ```
 */
export class ConversationView {
  /** The conversations and their lines. */
  readonly conversations: Conversations = new Conversations();
  /** This client's nick (mentions are of it). */
  nick = "";
  #screen: Screen;
  #colour: boolean;
  #bell: boolean;
  #highlight: boolean;
  #now: () => number;
  /** Conversations in the middle of a history replay (between "history" and "end of history"). */
  #inHistory = new Set<string>();
  /** A room being joined: its first line makes it current. */
  #expected: string | undefined;
  #prompting = false;
  /** This client's lines not yet stored, by id, oldest first. */
  #pending = new Map<string, OutboxItem>();
  /** Recipients of this client's direct messages stored, by id, until the server says they were delivered. */
  #sentTo = new Map<string, string>();
  #offline: { retryAt: number; reason: string } | undefined;
  #countdown: ReturnType<typeof setInterval> | undefined;
  #statusLine = (width: number) =>
    formatStatusLine(this.conversations.summary(), { width, colour: this.#colour, highlight: this.#highlight });

  /**
   * @param screen where it is shown
   * @param options colour, bell and clock
   */
  constructor(screen: Screen, options: ViewOptions) {
    this.#screen = screen;
    this.#colour = options.colour;
    this.#bell = options.bell;
    this.#highlight = options.highlight ?? true;
    this.#now = options.now ?? Date.now;
  }

  /** The current conversation's key (`#room`, `@nick`). */
  get currentKey(): string | undefined {
    return this.conversations.current?.key;
  }

  /** Where a message typed now goes: the current room, or the person of the current direct conversation. */
  get target(): ChatTarget | undefined {
    const current = this.conversations.current;
    if (!current) return undefined;
    return current.kind === "room" ? { room: current.name } : { peer: current.name };
  }

  /** The current room's name, when the current conversation is a room. */
  get room(): string | undefined {
    const current = this.conversations.current;
    return current?.kind === "room" ? current.name : undefined;
  }

  /** Prints a status line in the current conversation (or plainly, before there is one). */
  status(text: string): void {
    this.#line(this.currentKey, { kind: "status", text });
  }

  /** Prints a warning line in the current conversation (or plainly, before there is one). */
  warn(text: string): void {
    this.#line(this.currentKey, { kind: "status", text, warning: true });
  }

  /**
   * Prints a line about a command in progress (joining a room: the questions, a generated passphrase, the key
   * derivation) and keeps it in no conversation: it is never shown again on a switch. A generated passphrase is
   * "not shown again", and notices about the room being joined do not belong to the room that was current.
   *
   * @param text the line
   * @param options.warning shown as a warning
   */
  notice(text: string, options: { warning?: boolean } = {}): void {
    this.#print([{ kind: "status", text, warning: options.warning }]);
  }

  /** From now on the prompt names the current conversation and follows it when it changes. */
  startPrompt(): void {
    this.#prompting = true;
    this.#prompt();
  }

  /**
   * Notes that a room is being joined at the user's request: its first line (its history) makes it current.
   *
   * @param room the room, or undefined when the join is over
   */
  expect(room: string | undefined): void {
    this.#expected = room;
  }

  /**
   * A room was joined: its conversation is opened and made current, with its members for completion.
   *
   * @param room the room's name
   * @param options.members who is there
   */
  joined(room: string, options: { members: readonly string[] }): void {
    const key = conversationKey("room", room);
    const conversation = this.conversations.open("room", room);
    conversation.members.clear();
    for (const nick of options.members) conversation.members.add(nick);
    if (this.currentKey !== key) this.switchTo(key);
    this.#screen.setStatus(this.#statusLine);
  }

  /**
   * Closes a conversation; when it was current, the one before it becomes current.
   *
   * @param key the conversation
   */
  close(key: string): void {
    this.#inHistory.delete(key);
    this.#print(this.conversations.close(key));
    this.#prompt();
    this.#screen.setStatus(this.conversations.list.length > 0 ? this.#statusLine : undefined);
    this.#updateFooter();
  }

  /**
   * Makes a conversation current and prints what arrived there since it was last looked at.
   *
   * @param key the conversation
   * @returns false when there is no such conversation
   */
  switchTo(key: string): boolean {
    const fresh = this.conversations.get(key)?.lines.length === 0;
    const lines = this.conversations.switchTo(key);
    if (!lines) return false;
    // A conversation that has nothing yet needs no heading: the prompt and the status line name it.
    this.#print(fresh ? lines.slice(1) : lines);
    this.#prompt();
    this.#screen.setStatus(this.#statusLine);
    this.#updateFooter();
    return true;
  }

  /**
   * Switches to the conversation with a number (Alt-1..9).
   *
   * @param index from 1
   */
  switchToIndex(index: number): void {
    const key = this.conversations.keyAt(index);
    if (key !== undefined && key !== this.currentKey) this.switchTo(key);
  }

  /**
   * Switches to the next or previous conversation (Ctrl-N, Ctrl-P).
   *
   * @param step 1 or -1
   */
  cycle(step: 1 | -1): void {
    const key = this.conversations.nextKey(step);
    if (key !== undefined) this.switchTo(key);
  }

  /** Clears the screen and the current conversation's lines (/clear). */
  clear(): void {
    const key = this.currentKey;
    if (key !== undefined) this.conversations.clear(key);
    this.#inHistory.clear();
    this.#screen.clear();
  }

  /**
   * Takes this client's lines of the current conversation that were given up, oldest first (/retry).
   *
   * @returns the items
   */
  takeFailed(): OutboxItem[] {
    const failed = this.conversations.current?.failed;
    return failed ? failed.splice(0) : [];
  }

  /** Ends a history replay in a conversation (the join it came with is over). */
  endHistory(): void {
    for (const key of [...this.#inHistory]) {
      this.#inHistory.delete(key);
      this.#add(key, { kind: "status", text: "end of history" });
    }
  }

  /**
   * What Tab completes from in the current conversation.
   *
   * @param commands the command names
   * @param argumentOf what a command's first argument completes to
   * @returns the sources
   */
  completion(commands: readonly string[], argumentOf: CompletionSources["argumentOf"]): CompletionSources {
    const current = this.conversations.current;
    const nicks = current ? [...current.members] : [];
    if (current?.kind === "direct") nicks.push(current.name);
    return {
      commands,
      argumentOf,
      nicks: nicks.filter((n) => n !== this.nick),
      conversations: this.conversations.list.map((c) => c.key),
    };
  }

  /** Stops the offline countdown and takes the footer and status line away (the program is ending). */
  stop(): void {
    clearInterval(this.#countdown);
    this.#countdown = undefined;
    this.#pending.clear();
    this.#offline = undefined;
    this.#screen.setFooter([]);
    this.#screen.setStatus(undefined);
  }

  /**
   * Shows a session event (all but "closed", which ends the program: terminal.ts handles it).
   *
   * @param event the event
   */
  onEvent(event: ChatEvent): void {
    switch (event.kind) {
      case "message":
        return this.#message(conversationKey("room", event.message.room), event.message);
      case "direct":
        return this.#message(conversationKey("direct", event.message.peer), event.message);
      case "invitation":
        return this.#invitation(event.invitation);
      case "delivered":
        return this.#delivered(event.id);
      case "joined":
        return;
      case "older":
        return this.#older(conversationKey("room", event.room), event.messages, event.more);
      case "forged":
        return this.#line(event.room === undefined ? this.currentKey : conversationKey("room", event.room), {
          kind: "status",
          warning: true,
          text: event.count === 1
            ? `warning: a message claiming to be from ${displayNick(event.from)}${
              event.seq === undefined ? "" : ` (seq ${event.seq})`
            } failed authentication: not shown`
            : `warning: ${event.count} more messages claiming to be from ${displayNick(event.from)} failed ` +
              `authentication in the last ${Math.round(event.intervalMs / 1000)} s: not shown`,
        });
      case "presence":
        return this.#presence(event);
      case "nick":
        this.nick = event.new;
        return this.status(`you are now known as ${displayNick(event.new)}`);
      case "outbox":
        return this.#outbox(event.item);
      case "status":
        return this.status(event.text);
      case "parted":
        return this.parted(event.room, { reason: event.reason });
      case "offline":
        // Said once, and again only when the reason changes (say, the server is back but refuses the nick).
        if (event.attempt === 1) this.status(`connection lost (${event.reason}); reconnecting…`);
        else if (event.reason !== this.#offline?.reason) this.status(`still offline: ${event.reason}`);
        this.#offline = { retryAt: Date.now() + event.retryInMs, reason: event.reason };
        this.#countdown ??= setInterval(() => this.#updateFooter(), 1_000);
        return this.#updateFooter();
      case "reconnected":
        this.#offline = undefined;
        clearInterval(this.#countdown);
        this.#countdown = undefined;
        this.#updateFooter();
        return this.status(`reconnected: ${event.missed} missed messages fetched, ${event.resent} resent`);
      case "closed":
        this.#offline = undefined;
        return this.#updateFooter();
      default: {
        // What the client noticed about keys, pins and the server: in the room it concerns, else the current one.
        const notice = noticeOf(event);
        if (!notice) return;
        const key = roomOf(event);
        const known = key !== undefined && this.conversations.get(key) !== undefined;
        return this.#line(known ? key : this.currentKey, {
          kind: "status",
          text: notice.text,
          warning: notice.warning,
        });
      }
    }
  }

  #invitation(invitation: InvitationShown): void {
    if (invitation.history) return;
    const { from, room, trust } = invitation;
    const text = `${shownNick(from, trust)} invites you to #${room}: /accept ${room} joins it without a passphrase`;
    this.#line(this.currentKey, {
      kind: "status",
      text: trust === "changed" ? `[key changed] ${text}` : text,
      warning: trust === "changed",
    });
  }

  /** The server says it handed one of our direct messages over (not a receipt signed by the recipient). */
  #delivered(id: string): void {
    const to = this.#sentTo.get(id);
    if (to === undefined) return;
    this.#sentTo.delete(id);
    this.#line(conversationKey("direct", to), { kind: "status", text: `delivered to ${displayNick(to)}` });
  }

  #message(key: string, message: ChatMessage): void {
    this.#arrive(key);
    const conversation = this.conversations.open(key.startsWith("@") ? "direct" : "room", key.slice(1));
    if (message.type === "topic") {
      conversation.topic = message.text;
      this.#line(key, {
        kind: "status",
        text: `${displayNick(message.from)} set the topic: ${message.text}`,
        ts: message.ts,
      }, { history: message.history });
      return this.#screen.setStatus(this.#statusLine);
    }
    const own = message.from === this.nick;
    const mention = !own && (conversation.kind === "direct" || namesNick(message.text, this.nick));
    const { ts, from, type, text, history, trust, marks } = message;
    this.#line(key, { kind: "message", ts, from, type, text, history, mention, own, trust, marks }, { history });
    if (mention && !history && this.#bell) this.#screen.bell();
  }

  /**
   * The first line of a room being joined makes it current, so its history prints in place. The server may spell the
   * room otherwise than the user typed it (v2 compares names folded; its canonical spelling is the one in events).
   */
  #arrive(key: string): void {
    const expected = this.#expected;
    if (expected === undefined || key.toLowerCase() !== conversationKey("room", expected).toLowerCase()) return;
    this.#expected = undefined;
    this.conversations.open("room", key.slice(1));
    if (this.currentKey !== key) this.switchTo(key);
  }

  #older(key: string, messages: ChatMessage[], more: boolean): void {
    if (messages.length === 0) return;
    this.#line(key, { kind: "status", text: `${messages.length} older messages${more ? " (/history for more)" : ""}` });
    for (const m of messages) {
      const mention = m.from !== this.nick && namesNick(m.text, this.nick);
      const line: ConversationLine = { ...m, kind: "message", history: true, mention, own: m.from === this.nick };
      this.#line(key, line, { markers: false });
    }
    this.#line(key, { kind: "status", text: "end of older messages" });
  }

  #presence(event: Extract<ChatEvent, { kind: "presence" }>): void {
    const key = conversationKey("room", event.room);
    const members = this.conversations.get(key)?.members;
    const nick = shownNick(event.nick, event.trust);
    let text: string;
    if (event.event === "join") {
      members?.add(event.nick);
      text = `${nick} joined #${event.room}`;
    } else if (event.event === "leave") {
      members?.delete(event.nick);
      text = `${nick} left #${event.room}`;
    } else {
      members?.delete(event.old ?? "");
      members?.add(event.nick);
      text = `${displayNick(event.old ?? "")} is now known as ${nick}`;
    }
    this.#line(key, { kind: "status", text, ts: this.#now() });
  }

  /**
   * This connection left a room: its conversation closes (the one before it becomes current) and the current one
   * says so, once however many times it is told (the session's event, and the /part that asked for it).
   *
   * @param room the room's name
   * @param options.reason why, when it was not the user's /part
   */
  parted(room: string, options: { reason?: string } = {}): void {
    const key = conversationKey("room", room);
    if (!this.conversations.get(key)) return;
    this.close(key);
    this.status(`left #${room}${options.reason ? ` (${options.reason})` : ""}`);
  }

  #outbox(item: OutboxItem): void {
    const key = keyOfItem(item);
    if (item.to !== undefined && item.state === "acked") {
      this.#sentTo.set(item.id, item.to);
      if (this.#sentTo.size > 1000) this.#sentTo.delete(this.#sentTo.keys().next().value!);
    }
    if (item.state === "queued" || item.state === "sent") {
      this.#pending.set(item.id, item);
      return this.#updateFooter();
    }
    this.#pending.delete(item.id);
    const failed = item.state === "failed" ? item.reason ?? "given up" : undefined;
    const { ts, text } = item;
    // An invitation's body is a room's secret: never shown, never sent again as text by /retry.
    if (text.type === "invite") {
      const room = invitedRoom(item);
      this.#line(this.conversations.get(key) ? key : this.currentKey, {
        kind: "status",
        text: failed === undefined
          ? `you invited ${displayNick(item.to ?? "")} to #${room}`
          : `invitation not sent: ${failed}`,
        warning: failed !== undefined,
      });
      return this.#updateFooter();
    }
    if (failed !== undefined) this.conversations.get(key)?.failed.push(item);
    if (text.type === "topic" && failed === undefined) {
      const conversation = this.conversations.get(key);
      if (conversation) conversation.topic = text.body;
      this.#line(key, { kind: "status", text: `you set the topic: ${text.body}`, ts });
      this.#screen.setStatus(this.#statusLine);
      return this.#updateFooter();
    }
    this.#line(key, {
      kind: "message",
      ts,
      from: this.nick,
      type: text.type,
      text: text.body,
      history: false,
      mention: false,
      own: true,
      failed,
    });
    this.#updateFooter();
  }

  /**
   * Adds a line to a conversation (printing it when the conversation is current), with the history markers around a
   * replay.
   */
  #line(key: string | undefined, line: ConversationLine, options: { history?: boolean; markers?: boolean } = {}): void {
    if (key === undefined) return this.#print([line]);
    if (options.markers !== false) {
      const history = line.kind === "message" ? line.history : options.history ?? false;
      if (history && !this.#inHistory.has(key)) {
        this.#inHistory.add(key);
        this.#add(key, { kind: "status", text: "history" });
      } else if (!history && this.#inHistory.has(key)) {
        this.#inHistory.delete(key);
        this.#add(key, { kind: "status", text: "end of history" });
      }
    }
    this.#add(key, line);
  }

  #add(key: string, line: ConversationLine): void {
    const { print } = this.conversations.add(key, line);
    if (print.length > 0) this.#print(print);
    // Counts changed elsewhere: the status line says so.
    else this.#screen.setStatus(this.#statusLine);
  }

  #print(lines: ConversationLine[]): void {
    if (lines.length === 0) return;
    this.#screen.print(lines.map((line) => this.#render(line)).join("\n"));
  }

  #render(line: ConversationLine): string {
    const colour = this.#colour;
    const width = this.#screen.columns;
    switch (line.kind) {
      case "message":
        return formatMessage(line, {
          colour,
          width,
          mention: line.mention && this.#highlight,
          failed: line.failed,
          now: this.#now(),
        });
      case "status":
        return formatStatus(line.text, { colour, width, warning: line.warning, ts: line.ts });
      case "day":
        return formatDay(line.ts, { colour });
    }
  }

  #prompt(): void {
    if (this.#prompting) this.#screen.prompt(`${this.currentKey ?? ""}> `);
  }

  /** The footer: the current conversation's pending lines (the last few), others counted, the offline state. */
  #updateFooter(): void {
    const rows: string[] = [];
    const current = this.currentKey;
    const pending = [...this.#pending.values()];
    const here = pending.filter((item) => keyOfItem(item) === current);
    const elsewhere = pending.length - here.length;
    const hidden = here.length - FOOTER_PENDING;
    if (hidden > 0) rows.push(formatStatus(`… and ${hidden} more unsent`, { colour: this.#colour }));
    for (const item of here.slice(Math.max(0, hidden))) {
      const invite = item.text.type === "invite";
      const type = invite ? "text" : item.text.type;
      const line = {
        ts: item.ts,
        from: this.nick,
        type,
        text: invite ? "(an invitation)" : item.text.body,
        history: false,
      };
      rows.push(formatMessage(line, { colour: this.#colour, pending: true }));
    }
    if (elsewhere > 0) {
      rows.push(formatStatus(`${elsewhere} unsent in other conversations`, { colour: this.#colour }));
    }
    if (this.#offline) {
      const left = Math.ceil((this.#offline.retryAt - Date.now()) / 1000);
      const state = left > 0 ? `offline, retrying in ${left} s` : "offline, reconnecting…";
      rows.push(formatStatus(`${state}; ${pending.length} unsent`, { colour: this.#colour, warning: true }));
    }
    this.#screen.setFooter(rows);
  }
}
