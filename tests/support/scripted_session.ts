/**
 * A scripted session behind the terminal's interface (chat_session.ts): several rooms per connection, topics and
 * direct conversations, answered at once, for driving the real terminal (lib/client/terminal.ts) in-process
 * (terminal_test.ts) and in tmux (multiroom_client.ts).
 *
 * @module
 */

import type { ChatEvent, ChatSession, ChatTarget } from "../../lib/client/chat_session.ts";
import type { OutboxItem } from "../../lib/client/outbox.ts";
import { type InvitationShown, JoinError, type JoinHooks, type PeerInfo, SendError } from "../../lib/client/session.ts";

/**
 * A session that does what the terminal asks at once and tells the test (`report`). Joins succeed at once with the
 * members `[nick, "dave", "erin"]`, except rooms named in `newRooms`: those are created as the real session creates a
 * room, through the terminal's hooks (the passphrase question, the key derivation's spinner). Parting says "parted",
 * as the real session does.
 */
export class ScriptedSession implements ChatSession {
  readonly online = true;
  readonly unsent = 0;
  readonly maxBody = 16384;
  readonly multiRoom = true;
  readonly rooms: string[] = [];
  nick: string;
  #onEvent: (event: ChatEvent) => void;
  #report: (call: Record<string, unknown>) => void;
  #seq = 0;
  #newRooms: Set<string>;
  #lockedRooms: Set<string>;
  #invitations: InvitationShown[];

  /**
   * @param nick the nick
   * @param options.onEvent the terminal's event handler
   * @param options.report told of every call a server would see
   * @param options.newRooms rooms that do not exist yet: joining one creates it through the hooks
   * @param options.lockedRooms rooms that exist and whose join asks the hooks for the passphrase
   * @param options.invitations the invitations received (accepting one joins its room without asking)
   */
  constructor(
    nick: string,
    options: {
      onEvent: (event: ChatEvent) => void;
      report: (call: Record<string, unknown>) => void;
      newRooms?: Iterable<string>;
      lockedRooms?: Iterable<string>;
      invitations?: InvitationShown[];
    },
  ) {
    this.nick = nick;
    this.#onEvent = options.onEvent;
    this.#report = options.report;
    this.#newRooms = new Set(options.newRooms ?? []);
    this.#lockedRooms = new Set(options.lockedRooms ?? []);
    this.#invitations = options.invitations ?? [];
  }

  joinedRoom(name: string): string | undefined {
    return this.rooms.find((r) => r.toLowerCase() === name.toLowerCase());
  }

  pending(): OutboxItem[] {
    return [];
  }

  async join(room: string, hooks?: JoinHooks) {
    this.#report({ call: "join", room });
    const created = this.#newRooms.delete(room);
    if (created) {
      const passphrase = await hooks?.passphrase(room, { creating: true });
      if (passphrase === undefined) throw new JoinError("cancelled", `not joined #${room}`);
      hooks?.deriving?.(room, { iterations: 100_000 })();
    } else if (hooks && this.#lockedRooms.has(room)) {
      const passphrase = await hooks.passphrase(room, { creating: false });
      if (passphrase === undefined) throw new JoinError("cancelled", `not joined #${room}`);
      this.#report({ call: "passphrase", room, passphrase });
    }
    this.rooms.push(room);
    return { room, members: created ? [this.nick] : [this.nick, "dave", "erin"], created, history: 0 };
  }

  part(room: string): Promise<void> {
    this.#report({ call: "part", room });
    this.rooms.splice(this.rooms.indexOf(room), 1);
    this.#onEvent({ kind: "parted", room });
    return Promise.resolve();
  }

  say(target: ChatTarget, text: string, options: { type: "text" | "action" | "topic" }): OutboxItem {
    if ("room" in target && !this.rooms.includes(target.room)) throw new SendError(`not in #${target.room}`);
    this.#report({ call: "say", target, text, type: options.type });
    const id = crypto.randomUUID();
    const room = "room" in target ? target.room : "";
    const to = "peer" in target ? { to: target.peer } : {};
    const item = { id, room, ...to, text: { type: options.type, body: text }, ts: Date.now() };
    this.#onEvent({ kind: "outbox", item: { ...item, state: "queued" } as OutboxItem });
    setTimeout(() => {
      this.#onEvent({ kind: "outbox", item: { ...item, state: "acked", seq: ++this.#seq } as OutboxItem });
    }, 10);
    return { ...item, state: "queued" } as OutboxItem;
  }

  who(room: string): Promise<{ nick: string }[]> {
    return Promise.resolve([this.nick, "dave", "erin", `(${room})`].map((nick) => ({ nick })));
  }

  peerName(nick: string): string {
    return nick;
  }

  invite(nick: string, room: string): OutboxItem {
    this.#report({ call: "invite", nick, room });
    return this.say({ peer: nick }, "(an invitation)", { type: "text" });
  }

  async accept(room?: string) {
    this.#report({ call: "accept", room });
    const invitation = this.#invitations.findLast((i) => room === undefined || i.room === room);
    return { ...await this.join(room ?? "invited"), invitedBy: invitation?.from };
  }

  invitations(): InvitationShown[] {
    return this.#invitations;
  }

  whois(nick: string): Promise<PeerInfo> {
    this.#report({ call: "whois", nick });
    return Promise.resolve({ nick, fingerprint: "0".repeat(40), pinned: "0".repeat(40), trust: "pinned" });
  }

  safetyNumber(nick: string): Promise<{ nick: string; number: string }> {
    return Promise.resolve({ nick, number: Array(16).fill("00000").join(" ") });
  }

  verify(nick: string): boolean {
    this.#report({ call: "verify", nick });
    return true;
  }

  trust(nick: string): Promise<string | undefined> {
    this.#report({ call: "trust", nick });
    return Promise.resolve(undefined);
  }

  forgetRoom(room: string): Promise<boolean> {
    this.#report({ call: "forget", room });
    return Promise.resolve(false);
  }

  listRooms(): Promise<{ name: string; members: number }[]> {
    return Promise.resolve(this.rooms.map((name) => ({ name, members: 3 })));
  }

  changeNick(nick: string): Promise<void> {
    const old = this.nick;
    this.nick = nick;
    this.#onEvent({ kind: "nick", old, new: nick });
    return Promise.resolve();
  }

  older(): Promise<{ shown: number; more: boolean }> {
    return Promise.resolve({ shown: 0, more: false });
  }

  drain(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#report({ call: "close" });
    return Promise.resolve();
  }
}
