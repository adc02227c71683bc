/**
 * The rooms one session is in, and how it gets into them: a join (or a rejoin after a reconnect) asks for the
 * challenge, checks it against the room's pin (rooms.ts), finds the room's keys (memory, a secret kept in the home,
 * or a passphrase from the user interface), proves them, pins the room and enters it; presence, /who, /rooms and
 * leaving keep the member lists and the room list true. Part of the session; knows nothing of sockets or terminals.
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import { sameBytes } from "../bytes.ts";
import {
  DEFAULT_ITERATIONS,
  deriveRoomKeys,
  KeyDerivationError,
  makeSalt,
  type RoomKeys,
  roomKeysFromMaster,
  signJoinProof,
} from "../crypto.ts";
import { fingerprint } from "../identity.ts";
import { foldName, isRegistrableNick } from "../names.ts";
import {
  type ClientMessage,
  type MemberInfo,
  parseMembers,
  parseRoomList,
  proveMessage,
  type ServerMessage,
  type ServerMessageOf,
} from "../protocol.ts";
import { JoinError, SendError } from "./errors.ts";
import type { SessionEvent, Trust } from "./events.ts";
import type { Home, RoomPin } from "./home.ts";
import type { Arrived } from "./inbound.ts";
import type { Outbox } from "./outbox.ts";
import type { Peers } from "./peers.ts";
import { type Challenge, checkChallenge, RoomState } from "./rooms.ts";
import { SendSequence } from "./sequence.ts";

/** How long leaving a room waits for its messages to be stored. */
const LEAVE_DRAIN_MS = 10_000;

/** What a join may need from the user. */
export interface JoinHooks {
  /**
   * Asks for the room's passphrase; `creating` says the room does not exist yet (the hook may warn about weak
   * passphrases, ask for confirmation, or generate one); `createdMeanwhile` says the user was about to create it when
   * someone else did (the passphrase asked is now that room's). Returning undefined cancels the join.
   */
  passphrase(room: string, options: { creating: boolean; createdMeanwhile?: boolean }): Promise<string | undefined>;
  /** Called while the room key is being derived; the returned function is called when it is done. */
  deriving?(room: string, options: { iterations: number }): () => void;
}

/** The result of a join. */
export interface Joined {
  /** The room's canonical name. */
  room: string;
  /** Members present, including this client. */
  members: string[];
  /** Whether this client created the room. */
  created: boolean;
  /** History replayed (already delivered as message events). */
  history: number;
  /** Whether this connection was in the room already (nothing was done). */
  already?: boolean;
  /** Who invited this user, when the join accepted an invitation. */
  invitedBy?: string;
}

/** A member of a room, as /who shows it. */
export interface Member {
  /** Canonical nick. */
  nick: string;
  /** Fingerprint of the key the server's registry shows. */
  fingerprint: string;
  /** That key against the pin. */
  trust: Exclude<Trust, "unsigned">;
}

/** Live messages of a room being joined (not rejoined), waiting until its state exists. */
export interface Early {
  /** The raw relayed messages, in arrival order. */
  early: unknown[];
  /** Their bytes. */
  bytes: number;
}

/** What joining needs from the session. */
export interface JoiningOptions {
  /** The user's home: room pins, kept room secrets, ids shown. */
  home: Home;
  /** This run's device id (each room's numbering is for it). */
  device: Uint8Array<ArrayBuffer>;
  /** PBKDF2 count for rooms this client creates (default 600000). */
  iterations?: number;
  /** Lowest PBKDF2 count accepted for a room seen for the first time (default 600000). */
  minIterations?: number;
  /** Keep the secret of every room joined by passphrase in the home (default false). */
  remember?: boolean;
  /** Whether the session is connected (and not reconnecting) right now. */
  online(): boolean;
  /** The current nick. */
  nick(): string;
  /** The server's key. */
  serverPub(): Uint8Array;
  /** The peer book the member lists are checked against. */
  peers(): Peers;
  /** Writes a request and waits for its reply. */
  request<T extends ServerMessage["type"]>(message: ClientMessage, replyType: T): Promise<ServerMessageOf<T>>;
  /** Runs a job in the session's order of arrival. */
  inOrder<T>(job: () => Promise<T> | T): Promise<T>;
  /** Opens relayed messages of a room in order and shows those that pass; returns how many did. */
  show(room: RoomState, items: unknown[], arrived: Arrived): Promise<number>;
  /** The outbox (a room entered lets its messages go; a room left gives up those not stored). */
  outbox: Outbox;
  /** Receives the events. */
  onEvent(event: SessionEvent): void;
}

/**
 * The rooms of one session, and joining them.
 *
 * @example
 * ```ts
 * const joining = new Joining({
 *   home, device, online, nick, serverPub, peers, request, inOrder, show, outbox, onEvent,
 * });
 * await joining.join("general", { passphrase: () => Promise.resolve("a long shared passphrase") });
 * joining.room("GENERAL")?.name; // "general"
 * ```
 */
export class Joining {
  #options: JoiningOptions;
  #rooms = new Map<string, RoomState>();
  /** The room joined last (the default for say). */
  #last: string | undefined;
  /** Each room's numbering, by folded name, for the whole run (a room left and joined again goes on counting). */
  #numbering = new Map<string, SendSequence>();
  /** Rooms being joined (not rejoined): their live messages wait until their state exists. */
  #early = new Map<string, Early>();
  /** Derived keys by room, salt and iterations: memory only. */
  #keys = new Map<string, RoomKeys>();

  /** @param options what joining needs from the session */
  constructor(options: JoiningOptions) {
    this.#options = options;
  }

  /** The room joined last, if any. */
  get last(): string | undefined {
    return this.#last;
  }

  /** The rooms this connection is in, in the order joined. */
  get joined(): RoomState[] {
    return [...this.#rooms.values()];
  }

  /**
   * A joined room, comparing names as the server does (folded).
   *
   * @param name a room name in any spelling
   * @returns the room, or undefined when this connection is not in it
   */
  room(name: string): RoomState | undefined {
    return this.#rooms.get(foldName(name));
  }

  /**
   * A joined room, or the room joined last.
   *
   * @param name a room name in any spelling (default: the room joined last)
   * @returns the room
   * @throws {SendError} when not in it, or in no room at all
   */
  roomOf(name: string | undefined): RoomState {
    const room = name ?? this.#last;
    const state = room === undefined ? undefined : this.#rooms.get(foldName(room));
    if (!state) throw new SendError(room === undefined ? "join a room first" : `you are not in #${room}`);
    return state;
  }

  /**
   * A room's numbering for this run.
   *
   * @param fold the room's folded name
   * @returns the numbering, if the room was ever entered in this run
   */
  numbering(fold: string): SendSequence | undefined {
    return this.#numbering.get(fold);
  }

  /**
   * Where live messages of a room being joined wait (they can come in the same read as `joined`).
   *
   * @param name the room's canonical name, as the envelope names it
   * @returns the waiting messages, or undefined when that room is not being joined
   */
  early(name: string): Early | undefined {
    return this.#early.get(name);
  }

  /**
   * Joins a room, creating it when it does not exist. See `Session.join`.
   *
   * @param room the room name
   * @param hooks asks for the passphrase and shows key derivation
   * @param options.remember keep the room's secret in the home (default: the session's setting)
   * @param options.expect the parameters an invitation promised, checked as a pin before any is made
   * @returns what the join found
   * @throws {JoinError} for a wrong passphrase, a bad room name, a cancelled prompt, when offline, or "changed" /
   *   "weak" for a room whose parameters differ from its pin (or `expect`) or are below the floor
   */
  async join(room: string, hooks: JoinHooks, options: { remember?: boolean; expect?: RoomPin } = {}): Promise<Joined> {
    if (!this.#options.online()) throw new JoinError("offline", "not connected to the server right now");
    const current = this.#rooms.get(foldName(room));
    if (current) {
      this.#last = current.name;
      return {
        room: current.name,
        members: [...current.members.values()].map((m) => m.nick),
        created: false,
        history: 0,
        already: true,
      };
    }
    let createdMeanwhile = false;
    for (let attempt = 0;; attempt++) {
      try {
        const remember = options.remember ?? this.#options.remember ?? false;
        return await this.#joinOnce(room, { hooks, remember, expect: options.expect, createdMeanwhile });
      } catch (err) {
        // Someone else created the room while this user was creating it: join theirs (its passphrase is asked).
        if (err instanceof JoinError && err.code === "room_changed" && attempt < 2) {
          createdMeanwhile = true;
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Joins a room with an invitation's secret: its keys are offered to the join (and withdrawn when it fails), and its
   * parameters are checked as a pin, so nothing is pinned before the server's challenge agrees with the invitation.
   *
   * @param pin the room's parameters, as the invitation gives them
   * @param master the room's master secret
   * @returns what the join found
   * @throws {JoinError} as {@link Joining.join}
   */
  async joinInvited(pin: RoomPin, master: Uint8Array): Promise<Joined> {
    const name = keyName(pin.name, pin);
    const keys = await roomKeysFromMaster(master);
    if (!this.#keys.has(name)) this.#keys.set(name, keys);
    return await this.join(pin.name, { passphrase: () => Promise.resolve(undefined) }, { remember: false, expect: pin })
      .catch((err) => {
        if (this.#keys.get(name) === keys) this.#keys.delete(name);
        throw err;
      });
  }

  /**
   * Joins a room again after a reconnect, with the keys it has: no user is asked.
   *
   * @param room the room's state
   * @returns what the join found
   * @throws {JoinError} as a join ("access_denied" when its keys no longer open it)
   */
  rejoin(room: RoomState): Promise<Joined> {
    return this.#joinOnce(room.name, { rejoin: room });
  }

  /** One join (or rejoin, with the room's state): the challenge checked, the keys, the proof, the room entered. */
  async #joinOnce(
    room: string,
    options: {
      hooks?: JoinHooks;
      rejoin?: RoomState;
      remember?: boolean;
      expect?: RoomPin;
      createdMeanwhile?: boolean;
    },
  ): Promise<Joined> {
    const serverPub = this.#options.serverPub();
    const home = this.#options.home;
    const pin = options.rejoin?.pin ?? home.roomPin(serverPub, room) ?? options.expect;
    const ask = async () =>
      checkChallenge(await this.#options.request({ type: "join", room: options.rejoin?.name ?? room }, "challenge"), {
        asked: room,
        pin,
        minIterations: this.#options.minIterations ?? DEFAULT_ITERATIONS,
      });
    const { keys, create, challenge } = await this.#roomKeys(await ask(), { ...options, ask });
    const proof = await signJoinProof(keys, {
      nonce: challenge.nonce,
      room: challenge.room,
      nick: this.#options.nick(),
      bind: { serverPub, identityPub: home.identity.publicKey },
    });
    // Live messages of a room being joined can come in the same read as `joined`: they wait for its state.
    const early: Early = { early: [], bytes: 0 };
    if (!options.rejoin) this.#early.set(challenge.room, early);
    const joined = await this.#options.request(
      proveMessage(challenge.room, proof, create ? { ...create, accessPub: keys.accessPub } : undefined),
      "joined",
    ).finally(() => {
      if (this.#early.get(challenge.room) === early) this.#early.delete(challenge.room);
    });
    if (joined.room !== challenge.room) throw new JoinError("bad_reply", `the server answered for #${joined.room}`);
    const params = challenge.existing ?? { ...create!, accessPub: keys.accessPub, epoch: 0 };
    if (joined.epoch !== params.epoch) throw new JoinError("bad_reply", `the server answered with another epoch`);
    let members: MemberInfo[];
    try {
      members = parseMembers(joined.members, "joined.members");
    } catch (err) {
      throw new JoinError("bad_reply", (err as Error).message);
    }
    const roomPin = { name: challenge.room, ...params };
    if (home.pinRoom(serverPub, roomPin) === "differs") {
      throw new JoinError("changed", `refusing #${challenge.room}: another program pinned other parameters for it`);
    }
    this.#keys.set(keyName(challenge.room, params), keys);
    if (options.remember && !(await home.roomSecret(serverPub, challenge.room))) {
      await home.keepRoomSecret(serverPub, { ...roomPin, master: keys.master, source: "remember" });
    }
    if (options.rejoin) {
      options.rejoin.keys = keys;
      await this.#registry(options.rejoin, members);
      return { room: challenge.room, members: members.map((m) => m.nick), created: false, history: 0 };
    }
    return await this.#enter(joined, { keys, pin: roomPin, members, early: early.early, created: !!create });
  }

  /**
   * The keys for a checked challenge: for a new room, derived from a fresh salt and a passphrase; for an existing
   * one, from the room's state (rejoining), memory, a kept secret, or a passphrase. Keys that do not give the
   * challenge's access key are refused before anything is sent (a wrong passphrase, or a server forging a salt).
   */
  async #roomKeys(
    challenge: Challenge,
    options: { hooks?: JoinHooks; rejoin?: RoomState; createdMeanwhile?: boolean; ask(): Promise<Challenge> },
  ): Promise<
    { keys: RoomKeys; create?: { salt: Uint8Array<ArrayBuffer>; iterations: number }; challenge: Challenge }
  > {
    const { room, existing } = challenge;
    const hooks = options.hooks;
    if (!existing) {
      if (!hooks) throw new JoinError("access_denied", `#${room} does not exist on the server any more`);
      const passphrase = await this.#passphrase(room, hooks, { creating: true });
      // Choosing a passphrase takes a while: a room someone else made meanwhile is found before deriving a key that
      // could not make it (a fresh challenge; the server keeps the latest).
      const fresh = await options.ask();
      if (fresh.existing) throw new JoinError("room_changed", `#${room} was created meanwhile by someone else`);
      const iterations = this.#options.iterations ?? DEFAULT_ITERATIONS;
      const salt = makeSalt();
      const keys = await this.#derive(room, { hooks, passphrase, salt, iterations });
      return { keys, create: { salt, iterations }, challenge: fresh };
    }
    const matches = (keys: RoomKeys) => sameBytes(keys.accessPub, existing.accessPub);
    const candidates = [options.rejoin?.keys, this.#keys.get(keyName(room, existing))];
    for (const keys of candidates) if (keys && matches(keys)) return { keys, challenge };
    const kept = await this.#options.home.roomSecret(this.#options.serverPub(), room);
    if (kept && sameBytes(kept.accessPub, existing.accessPub)) {
      const keys = await roomKeysFromMaster(kept.master);
      if (matches(keys)) return { keys, challenge };
    }
    if (!hooks) throw new JoinError("access_denied", `the keys of #${room} no longer open it`);
    const passphrase = await this.#passphrase(room, hooks, {
      creating: false,
      createdMeanwhile: options.createdMeanwhile,
    });
    const keys = await this.#derive(room, { hooks, passphrase, ...existing });
    // Checked here, so that a wrong passphrase (or a forged salt) never produces a proof anyone could test.
    if (!matches(keys)) throw new JoinError("access_denied", `wrong passphrase for #${room}`);
    return { keys, challenge };
  }

  async #passphrase(
    room: string,
    hooks: JoinHooks,
    options: { creating: boolean; createdMeanwhile?: boolean },
  ): Promise<string> {
    const passphrase = await hooks.passphrase(room, options);
    if (passphrase === undefined) throw new JoinError("cancelled", `join ${room} cancelled`);
    return passphrase;
  }

  async #derive(
    room: string,
    options: { hooks: JoinHooks; passphrase: string; salt: Uint8Array; iterations: number },
  ): Promise<RoomKeys> {
    const done = options.hooks.deriving?.(room, { iterations: options.iterations });
    try {
      return await deriveRoomKeys(options.passphrase, { salt: options.salt, iterations: options.iterations });
    } catch (err) {
      if (err instanceof KeyDerivationError) throw new JoinError("bad_passphrase", err.message);
      throw err;
    } finally {
      done?.();
    }
  }

  /** Enters a newly joined room: its state, the registry, its history, what came with it. */
  async #enter(
    joined: ServerMessageOf<"joined">,
    init: {
      keys: RoomKeys;
      pin: RoomState["pin"];
      members: MemberInfo[];
      early: unknown[];
      created: boolean;
    },
  ): Promise<Joined> {
    const serverPub = this.#options.serverPub();
    const fold = foldName(joined.room);
    let sending = this.#numbering.get(fold);
    if (!sending) this.#numbering.set(fold, sending = new SendSequence(this.#options.device));
    const state = new RoomState({
      keys: init.keys,
      context: {
        serverPub,
        room: joined.room,
        accessPub: init.pin.accessPub,
        epoch: init.pin.epoch,
      },
      pin: init.pin,
      latestSeq: joined.latest_seq,
      sending,
      seen: await this.#options.home.seenIds(serverPub, joined.room),
    });
    this.#rooms.set(fold, state);
    this.#last = state.name;
    await this.#options.inOrder(() => this.#registry(state, init.members));
    this.#options.onEvent({
      kind: "joined",
      room: state.name,
      members: init.members.map((m) => m.nick),
      created: init.created,
    });
    // Both queued at once, before any later live message: history, then what came with `joined`, then the rest.
    const shown = this.#options.show(state, joined.history, "join");
    const earlyShown = this.#options.show(state, init.early, "live");
    const history = await shown;
    await earlyShown;
    this.#options.outbox.kick();
    return { room: state.name, members: init.members.map((m) => m.nick), created: init.created, history };
  }

  /** Takes the server's member list for a room: each key compared with (or pinned as) the nick's. */
  async #registry(room: RoomState, listed: MemberInfo[]): Promise<Member[]> {
    const members = this.#registrable(room, listed);
    room.setMembers(members);
    const out: Member[] = [];
    for (const m of members) {
      const key = decodeBase64(m.key);
      const trust = await this.#options.peers().check(m.nick, key, { room: room.name });
      out.push({ nick: m.nick, fingerprint: await fingerprint(key), trust });
    }
    return out;
  }

  /**
   * The members whose nick a server could register; the others (a lying server's lookalikes: `alice` with a
   * zero-width space draws as `alice`) are left out, with a warning, and pin nothing.
   */
  #registrable(room: RoomState, members: MemberInfo[]): MemberInfo[] {
    const kept = members.filter((m) => isRegistrableNick(m.nick));
    if (kept.length < members.length) {
      this.#options.onEvent({
        kind: "status",
        text: `the server listed ${members.length - kept.length} member(s) of #${room.name} under a nick no server ` +
          `may register (invisible or padded characters): left out; the server is not to be trusted with names`,
      });
    }
    return kept;
  }

  /**
   * Takes a presence message: the room's member list updated, the key checked, the user told of a join, a leave or
   * a nick change. Call it in the order of arrival.
   *
   * @param msg the server's presence message
   */
  async presence(msg: ServerMessageOf<"presence">): Promise<void> {
    const room = typeof msg.room === "string" ? this.#rooms.get(foldName(msg.room)) : undefined;
    if (!room || room.name !== msg.room) return;
    let members: MemberInfo[];
    try {
      members = parseMembers([{ nick: msg.nick, key: msg.key }], "presence");
    } catch {
      return;
    }
    const [member] = this.#registrable(room, members);
    if (member === undefined) return;
    if (msg.event === "leave") room.members.delete(foldName(member.nick));
    else {
      if (msg.event === "nick" && typeof msg.old === "string") room.members.delete(foldName(msg.old));
      room.members.set(foldName(member.nick), member);
    }
    const trust = await this.#options.peers().check(member.nick, decodeBase64(member.key), { room: room.name });
    if (msg.event === "join" || msg.event === "leave" || (msg.event === "nick" && typeof msg.old === "string")) {
      this.#options.onEvent({
        kind: "presence",
        event: msg.event,
        room: room.name,
        nick: member.nick,
        old: msg.old,
        trust,
      });
    }
  }

  /**
   * Leaves a room: waits a moment for its messages on their way to be stored (those that are not are given up).
   *
   * @param room the room
   * @throws {JoinError} when not in it, or offline
   */
  async part(room: string): Promise<void> {
    const state = this.#rooms.get(foldName(room));
    if (!state) throw new JoinError("not_in_room", `you are not in #${room}`);
    if (!this.#options.online()) throw new JoinError("offline", "not connected to the server right now");
    const outbox = this.#options.outbox;
    await outbox.whenPendingAtMost(0, { room: state.name, timeoutMs: LEAVE_DRAIN_MS }).catch(() => {});
    await this.#options.request({ type: "part", room: state.name }, "parted");
    this.#rooms.delete(foldName(room));
    outbox.failRoom(state.name, `you left #${state.name} before it was stored`);
    if (this.#last === state.name) this.#last = this.joined.at(-1)?.name;
    this.#options.home.flush();
    this.#options.onEvent({ kind: "parted", room: state.name });
  }

  /**
   * Lists the members of a room, each key compared with the pin.
   *
   * @param room the room (default: the room joined last)
   * @returns the members
   * @throws {JoinError} when offline or refused; {@link SendError} when not in the room
   */
  async who(room?: string): Promise<Member[]> {
    const state = this.roomOf(room);
    const reply = await this.#options.request({ type: "who", room: state.name }, "who");
    let members: MemberInfo[];
    try {
      members = parseMembers(reply.members, "who.members");
    } catch (err) {
      throw new JoinError("bad_reply", (err as Error).message);
    }
    return await this.#options.inOrder(() => this.#registry(state, members));
  }

  /**
   * Lists the rooms this connection is in, with their member counts.
   *
   * @returns the rooms
   * @throws {JoinError} when offline or refused
   */
  async roomList(): Promise<{ name: string; count: number }[]> {
    const reply = await this.#options.request({ type: "rooms" }, "rooms");
    try {
      return parseRoomList(reply.rooms);
    } catch (err) {
      throw new JoinError("bad_reply", (err as Error).message);
    }
  }

  /**
   * Forgets the keys derived for a room (its pin and kept secret are the home's to forget).
   *
   * @param room the room, in any spelling
   */
  forgetKeys(room: string): void {
    for (const name of [...this.#keys.keys()]) if (name.startsWith(`${foldName(room)}\u0000`)) this.#keys.delete(name);
  }

  /** Forgets every key derived (the session is closed). */
  clearKeys(): void {
    this.#keys.clear();
  }
}

function keyName(room: string, params: { salt: Uint8Array; iterations: number }): string {
  return `${foldName(room)}\u0000${params.salt.toBase64()}\u0000${params.iterations}`;
}
