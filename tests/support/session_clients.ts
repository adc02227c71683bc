/**
 * Client sessions for in-process tests: each with its own temporary home (never the user's), every event recorded,
 * and helpers to read what it showed. Works with any dial function (the v2 double, or the real Hub).
 *
 * @module
 */

import { deriveRoomKeys, type RoomKeys } from "../../lib/crypto.ts";
import type { Dial } from "../../lib/client/link.ts";
import { Home } from "../../lib/client/home.ts";
import { EvilServer } from "./evil_server.ts";
import type { OutboxItem } from "../../lib/client/outbox.ts";
import {
  type DirectShown,
  type JoinHooks,
  Session,
  type SessionEvent,
  type SessionOptions,
  type ShownMessage,
} from "../../lib/client/session.ts";

/** The PBKDF2 count tests create rooms with (the lowest allowed: tests check behaviour, not stretching). */
export const TEST_ITERATIONS = 100_000;
/** Reconnect delays short enough for tests. */
export const FAST_RECONNECT = { firstDelayMs: 10, maxDelayMs: 80 };

/** A session, its home, and everything it reported. */
export interface TestClient {
  /** The session. */
  session: Session;
  /** Its home (a temporary directory). */
  home: Home;
  /** Every event, in order. */
  events: SessionEvent[];
  /** The room messages shown (message events, and older pages). */
  messages(): ShownMessage[];
  /** The direct messages shown. */
  directs(): DirectShown[];
  /** Events of one kind. */
  of<K extends SessionEvent["kind"]>(kind: K): Extract<SessionEvent, { kind: K }>[];
  /** The last state each outbox item reached, in the order they were said, filtered by state. */
  outbox(state: OutboxItem["state"]): OutboxItem[];
  /** Closes the session (the home stays for a restart; {@link TestHomes.cleanup} removes it). */
  close(): Promise<void>;
}

/** Passphrase hooks that always answer `passphrase`. */
export function passphraseHooks(passphrase: string): JoinHooks {
  return { passphrase: () => Promise.resolve(passphrase) };
}

/** Temporary homes, removed together. */
export class TestHomes {
  #dirs: string[] = [];

  /**
   * A new empty home directory.
   *
   * @returns its path
   */
  async dir(): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix: "aeschat-home-" });
    this.#dirs.push(dir);
    return dir;
  }

  /**
   * Connects a session with a home (a new one unless `dir` is given: a restart of the same user).
   *
   * @param dial the server
   * @param nick the nick
   * @param options session options, and the home's directory
   * @returns the client
   */
  async connect(
    dial: Dial,
    nick: string,
    options: Partial<SessionOptions> & { dir?: string } = {},
  ): Promise<TestClient> {
    const home = options.home ?? await Home.open(options.dir ?? await this.dir());
    const events: SessionEvent[] = [];
    const session = await Session.connect(dial, {
      nick,
      home,
      address: "127.0.0.1:5000",
      iterations: TEST_ITERATIONS,
      minIterations: TEST_ITERATIONS,
      reconnect: FAST_RECONNECT,
      ...options,
      onEvent: (event) => {
        events.push(event);
        options.onEvent?.(event);
      },
    });
    return clientOf(session, home, events);
  }

  /** Removes every home made. */
  async cleanup(): Promise<void> {
    for (const dir of this.#dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function clientOf(session: Session, home: Home, events: SessionEvent[]): TestClient {
  const of = <K extends SessionEvent["kind"]>(kind: K) =>
    events.filter((e) => e.kind === kind) as Extract<SessionEvent, { kind: K }>[];
  return {
    session,
    home,
    events,
    of,
    messages: () => events.flatMap((e) => e.kind === "message" ? [e.message] : e.kind === "older" ? e.messages : []),
    directs: () => of("direct").map((e) => e.message),
    outbox: (state) => {
      const items = new Map<string, OutboxItem>();
      for (const e of events) if (e.kind === "outbox") items.set(e.item.id, e.item);
      return [...items.values()].filter((i) => i.state === state);
    },
    close: () => session.close(),
  };
}

/**
 * Waits until `test` holds, polling; fails after a generous deadline (never asserts speed).
 *
 * @param test the condition
 * @param what described in the error
 * @param timeoutMs the deadline
 */
export async function poll(test: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Lets pending work settle (messages in flight would arrive by then).
 *
 * @param ms how long
 */
export function settle(ms = 100): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const keyCache = new Map<string, Promise<RoomKeys>>();

/**
 * A room's keys, derived once per test process (what every member holds).
 *
 * @param passphrase the passphrase
 * @param options.salt the room's salt
 * @param options.iterations its PBKDF2 count
 * @returns the keys
 */
export function roomKeysOf(passphrase: string, options: { salt: Uint8Array; iterations: number }): Promise<RoomKeys> {
  const key = `${passphrase}\u0000${options.salt.toHex()}\u0000${options.iterations}`;
  let keys = keyCache.get(key);
  if (!keys) keyCache.set(key, keys = deriveRoomKeys(passphrase, options));
  return keys;
}

/**
 * A lying server double with alice and bob in #general (rooms of `passphrase`), alice having said one line that bob
 * saw; `done` closes them (and any more clients given) and removes their homes.
 *
 * @param passphrase the room's passphrase
 * @returns the server, the homes, both clients and the clean-up
 */
export async function evilConversation(passphrase: string) {
  const hooks = passphraseHooks(passphrase);
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  await alice.session.join("general", hooks);
  await bob.session.join("general", hooks);
  alice.session.say("first");
  await poll(() => bob.messages().length === 1, "bob sees alice's first line");
  const done = async (...more: TestClient[]) => {
    for (const c of [alice, bob, ...more]) await c.close();
    await homes.cleanup();
  };
  return { server, homes, alice, bob, done };
}
