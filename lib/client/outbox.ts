/**
 * The one ordered queue of outgoing chat messages: every path that sends (a typed line, an action, a resend after a
 * reconnect, a reseal after a nick change, a retry after `storage_failed`) goes through it, and one pump writes them
 * strictly in the order they were added. Sealing is asynchronous, so the pump seals one item at a time and a later
 * item can never overtake an earlier one. An item stays pending until the server acknowledges it; the session
 * reports what happens to each through {@link OutboxOptions.changed}. Commands that change how later messages are
 * sealed (a nick change) run as barriers in the same queue.
 *
 * The outbox knows nothing of sockets, keys or the wire format: the session gives it the functions that seal an item
 * into a frame and write a frame.
 *
 * @module
 */

import { ID_BYTES } from "../envelope.ts";

/** Where an item is: waiting to be written, written and waiting for the ack, acknowledged (stored), or given up. */
export type OutboxState = "queued" | "sent" | "acked" | "failed";

/** What an outgoing message says: its type and body. */
export interface OutgoingText {
  /** "text", "action" for /me, "topic" (rooms), or "invite" (direct: the body is the invitation). */
  type: "text" | "action" | "topic" | "invite";
  /** What was said. */
  body: string;
}

/** One outgoing message. */
export interface OutboxItem {
  /** Message id, base64 of 16 random bytes; the same for every resend. */
  readonly id: string;
  /** The room it is for ("" for a direct message). */
  readonly room: string;
  /** The recipient of a direct message (undefined for a room message). */
  readonly to?: string;
  /** What it says. */
  readonly text: OutgoingText;
  /** When it was added (the sender's clock, ms since the epoch); the same for every resend. */
  readonly ts: number;
  /** Where it is. */
  readonly state: OutboxState;
  /** The server's sequence number, once acknowledged with one. */
  readonly seq?: number;
  /** Why it was given up, once failed. */
  readonly reason?: string;
  /** A code for why it was given up, when the sealing step said one ("changed": the recipient's key changed). */
  readonly code?: string;
}

/** What the outbox needs from the session. */
export interface OutboxOptions {
  /** Seals an item (again, when what it was sealed with changed) into the frame to write. May throw to fail it. */
  frame(item: OutboxItem): Promise<Uint8Array>;
  /** Writes a frame to the server. */
  write(frame: Uint8Array): void;
  /** Whether an item may be written now (connected, and its room joined). */
  ready(item: OutboxItem): boolean;
  /** Told about every change of an item's state, in order. */
  changed(item: OutboxItem): void;
  /** A frame {@link OutboxOptions.frame} made was not written: the next write of the item must seal it again. */
  discard?(item: OutboxItem): void;
  /** Delay before an item refused with a retryable error is written again (default 1 s). */
  retryDelayMs?: number;
  /** Retries of one item before it is given up (default 5). */
  retries?: number;
}

interface Item extends OutboxItem {
  state: OutboxState;
  seq?: number;
  reason?: string;
  code?: string;
  retries: number;
}

interface Barrier {
  run(): Promise<void>;
  cancel(error: Error): void;
}

type Entry = { item: Item } | { barrier: Barrier };

interface Waiter {
  test(): boolean;
  resolve(): void;
  reject(error: Error): void;
}

/** A copy of an item as it is now, for the session's events (the queue keeps changing its own). */
function snapshot(item: Item): OutboxItem {
  const { id, room, to, text, ts, state, seq, reason, code } = item;
  return Object.freeze({
    id,
    room,
    ...(to === undefined ? {} : { to }),
    text,
    ts,
    state,
    ...(seq === undefined ? {} : { seq }),
    ...(reason ? { reason } : {}),
    ...(code ? { code } : {}),
  });
}

/** Default delay before a retry. */
const RETRY_DELAY_MS = 1_000;
/** Default retries of one item. */
const RETRIES = 5;

/**
 * The queue. Add items with {@link Outbox.add}; call {@link Outbox.kick} whenever a room becomes ready.
 *
 * @example
 * ```ts
 * const outbox = new Outbox({ frame: seal, write: (f) => link.write(f), ready: () => online, changed: show });
 * const item = outbox.add("general", { type: "text", body: "hello" });
 * // later, from the server's answers:
 * outbox.ack(item.id, 42);
 * ```
 */
export class Outbox {
  #options: OutboxOptions;
  #entries: Entry[] = [];
  /** Entries before this index are all done (acked, failed, or barriers that ran): skipped and compacted away. */
  #head = 0;
  #byId = new Map<string, Item>();
  /** Rooms whose items wait for a retry timer. */
  #held = new Map<string, ReturnType<typeof setTimeout>>();
  /**
   * Rooms in stop-and-wait after a refusal: the refused item goes out alone, and the items behind it only once it is
   * stored, so that a store that recovers between two of them cannot put a later one first.
   */
  #careful = new Map<string, Item>();
  #pumping = false;
  #kicked = false;
  #waiters: Waiter[] = [];
  #closed: Error | undefined;

  /** @param options how to seal, write and report */
  constructor(options: OutboxOptions) {
    this.#options = options;
  }

  /** Items not yet acknowledged or given up (queued or sent). */
  get unsent(): number {
    return this.#byId.size;
  }

  /**
   * A pending item by id: the queue's own object, the same one {@link OutboxOptions.frame} is given.
   *
   * @param id the message id
   * @returns the item, or undefined when no item with that id is queued or sent
   */
  get(id: string): OutboxItem | undefined {
    return this.#byId.get(id);
  }

  /**
   * The items not yet acknowledged or given up, oldest first.
   *
   * @returns the items
   */
  pending(): OutboxItem[] {
    const out: OutboxItem[] = [];
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i];
      if ("item" in entry && this.#byId.has(entry.item.id)) out.push(snapshot(entry.item));
    }
    return out;
  }

  /**
   * Adds a message at the end of the queue and starts writing it as soon as everything before it is written.
   *
   * @param target the room it is for, or `{ to }` the recipient of a direct message
   * @param text what it says
   * @returns the item (state "queued"), with a fresh random id and the current time
   * @throws {Error} when the outbox is closed
   */
  add(target: string | { to: string }, text: OutgoingText): OutboxItem {
    if (this.#closed) throw this.#closed;
    const id = crypto.getRandomValues(new Uint8Array(ID_BYTES)).toBase64();
    const where = typeof target === "string" ? { room: target } : { room: "", to: target.to };
    const item: Item = { id, ...where, text, ts: Date.now(), state: "queued", retries: 0 };
    this.#entries.push({ item });
    this.#byId.set(id, item);
    this.#options.changed(snapshot(item));
    this.kick();
    return snapshot(item);
  }

  /**
   * Runs `fn` in queue order: after every message added before it has been written, and before any message added
   * after it. A nick change runs so: earlier messages go out under the old nick, later ones are sealed under the new.
   *
   * @param fn the step to run
   * @returns what `fn` returns
   * @throws what `fn` throws, or the error given to {@link Outbox.cancelBarriers}
   */
  barrier<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const barrier: Barrier = {
        run: async () => {
          if (settled) return;
          settled = true;
          try {
            resolve(await fn());
          } catch (err) {
            reject(err);
          }
        },
        cancel: (error) => {
          if (settled) return;
          settled = true;
          reject(error);
        },
      };
      this.#entries.push({ barrier });
      this.kick();
    });
  }

  /**
   * Rejects every barrier still waiting (the connection was lost: a nick change cannot wait for it).
   *
   * @param error what they are rejected with
   */
  cancelBarriers(error: Error): void {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i];
      if ("barrier" in entry) entry.barrier.cancel(error);
    }
  }

  /** Starts writing whatever can be written now (call it when a room becomes ready). */
  kick(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      // The pump may be between its last look and its end: have it look once more.
      this.#kicked = true;
      return;
    }
    this.#pumping = true;
    this.#kicked = false;
    this.#pump().finally(() => {
      this.#pumping = false;
      if (this.#kicked) this.kick();
    });
  }

  async #pump(): Promise<void> {
    while (!this.#closed) {
      const entry = this.#next();
      if (!entry) return;
      if ("barrier" in entry) {
        this.#entries[this.#entries.indexOf(entry, this.#head)] = { item: DONE };
        await entry.barrier.run();
        continue;
      }
      const item = entry.item;
      let frame: Uint8Array;
      try {
        frame = await this.#options.frame(item);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        this.fail(item.id, (err as Error).message, typeof code === "string" ? { code } : {});
        continue;
      }
      // While it was sealed the item may have been acknowledged or given up (a resend whose first copy was stored),
      // the link lost, or an earlier item put back in the queue: then it is not next any more, and the frame is
      // dropped unwritten (the earlier item may be sealed again first: a frame sealed before it must not follow it).
      if (this.#next() !== entry) {
        if (item.state === "queued") this.#options.discard?.(item);
        continue;
      }
      item.state = "sent";
      this.#options.write(frame);
      this.#options.changed(snapshot(item));
    }
  }

  /**
   * The first entry that may go now: a barrier once nothing before it is still to be written, or the first queued
   * item of a room that is ready and not held (items of other rooms are not held up by one room that is not).
   */
  #next(): Entry | undefined {
    this.#compact();
    const blocked = new Set<string>();
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i];
      if ("barrier" in entry) return blocked.size === 0 ? entry : undefined;
      const item = entry.item;
      const lane = laneOf(item);
      if (blocked.has(lane)) continue;
      const careful = this.#careful.get(lane);
      if (careful && careful !== item && careful.state === "sent") {
        // Stop-and-wait: nothing behind the refused item until it is stored.
        blocked.add(lane);
        continue;
      }
      if (item.state !== "queued") continue;
      if (this.#options.ready(item) && !this.#held.has(lane)) return entry;
      blocked.add(lane);
    }
    return undefined;
  }

  #compact(): void {
    while (this.#head < this.#entries.length) {
      const entry = this.#entries[this.#head];
      if ("barrier" in entry || (entry.item.state !== "acked" && entry.item.state !== "failed")) break;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * The server stored an item (`ack`, `duplicate_id`, or the message seen in a catch-up).
   *
   * @param id the message id
   * @param seq its sequence number, when known
   * @returns the item, or undefined when no pending item has that id
   */
  ack(id: string, seq?: number): OutboxItem | undefined {
    const item = this.#byId.get(id);
    if (!item) return undefined;
    this.#byId.delete(id);
    item.state = "acked";
    if (this.#careful.get(laneOf(item)) === item) {
      this.#careful.delete(laneOf(item));
      this.kick();
    }
    if (seq !== undefined) item.seq = seq;
    this.#options.changed(snapshot(item));
    this.#settle();
    return snapshot(item);
  }

  /**
   * The server refused an item for a reason that may pass (`storage_failed`, or a reseal is needed): write it again
   * after the retry delay, and with it every later item of its room that was already written, in order, so the
   * room's messages keep their order. Later items that were stored meanwhile are answered as duplicates, which
   * counts as stored. After the last retry the item is given up.
   *
   * @param id the message id
   * @param reason why, for the user when it is given up
   * @param options.now retry at once instead of after the delay (a reseal under a new nick)
   * @returns whether it will be retried (false: given up, or no such pending item)
   */
  retry(id: string, reason: string, options: { now?: boolean } = {}): boolean {
    const item = this.#byId.get(id);
    if (!item) return false;
    if (item.retries >= (this.#options.retries ?? RETRIES)) {
      this.fail(id, reason);
      return false;
    }
    item.retries++;
    const lane = laneOf(item);
    this.#requeue(lane, item);
    const careful = this.#careful.get(lane);
    if (!careful || careful.state === "acked" || careful.state === "failed" || this.#before(item, careful)) {
      this.#careful.set(lane, item);
    }
    if (!options.now) {
      clearTimeout(this.#held.get(lane));
      this.#held.set(
        lane,
        setTimeout(() => {
          this.#held.delete(lane);
          this.kick();
        }, this.#options.retryDelayMs ?? RETRY_DELAY_MS),
      );
    }
    this.kick();
    return true;
  }

  /** Whether `a` comes before `b` in the queue. */
  #before(a: Item, b: Item): boolean {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i];
      if ("item" in entry && entry.item === a) return true;
      if ("item" in entry && entry.item === b) return false;
    }
    return false;
  }

  /** Puts `from` and every later written item of its lane back to "queued". */
  #requeue(lane: string, from: Item): void {
    let found = false;
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i];
      if (!("item" in entry)) continue;
      found ||= entry.item === from;
      if (found && laneOf(entry.item) === lane && entry.item.state === "sent") entry.item.state = "queued";
    }
  }

  /** The connection was lost: every written item not yet acknowledged is written again, in order, once ready. */
  rewind(): void {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i];
      if ("item" in entry && entry.item.state === "sent") entry.item.state = "queued";
    }
  }

  /**
   * Gives an item up.
   *
   * @param id the message id
   * @param reason why, for the user
   * @param options.code a code for why (kept in the item)
   * @returns the item, or undefined when no pending item has that id
   */
  fail(id: string, reason: string, options: { code?: string } = {}): OutboxItem | undefined {
    const item = this.#byId.get(id);
    if (!item) return undefined;
    this.#byId.delete(id);
    item.state = "failed";
    item.reason = reason;
    if (options.code !== undefined) item.code = options.code;
    if (this.#careful.get(laneOf(item)) === item) {
      this.#careful.delete(laneOf(item));
      this.kick();
    }
    this.#options.changed(snapshot(item));
    this.#settle();
    return snapshot(item);
  }

  /**
   * Gives up every pending item of a room (it was left before they were stored).
   *
   * @param room the room
   * @param reason why, for the user
   */
  failRoom(room: string, reason: string): void {
    for (const item of this.pending()) if (item.to === undefined && item.room === room) this.fail(item.id, reason);
  }

  /**
   * Waits until at most `count` items are pending (script mode keeps its memory bounded with it).
   *
   * @param count how many may stay pending
   * @param options.timeoutMs give up after this long (default: wait as long as it takes)
   * @param options.room count only this room's items
   * @throws {Error} on timeout, or the error the outbox was closed with
   */
  whenPendingAtMost(count: number, options: { timeoutMs?: number; room?: string } = {}): Promise<void> {
    const test = () =>
      (options.room === undefined
        ? this.#byId.size
        : this.pending().filter((i) => laneOf(i) === options.room).length) <=
        count;
    if (test()) return Promise.resolve();
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waiter: Waiter = {
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.push(waiter);
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new Error(`${this.#byId.size} messages not stored after ${options.timeoutMs} ms`));
        }, options.timeoutMs);
      }
    });
  }

  #settle(): void {
    if (this.#waiters.length === 0) return;
    const ready = this.#waiters.filter((w) => w.test());
    this.#waiters = this.#waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }

  /**
   * Stops the queue for good: waiters and barriers are rejected, retry timers cleared; pending items stay pending
   * (the caller lists them).
   *
   * @param error what waiters are rejected with
   */
  close(error: Error): void {
    if (this.#closed) return;
    this.#closed = error;
    for (const timer of this.#held.values()) clearTimeout(timer);
    this.#held.clear();
    this.cancelBarriers(error);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
  }
}

/**
 * The lane an item is ordered in: its room, or its recipient for a direct message (a name cannot hold U+0000, so
 * the two never meet). Items of one lane keep their order; a lane that is not ready does not hold up the others.
 */
function laneOf(item: OutboxItem): string {
  return item.to === undefined ? item.room : `\u0000${item.to}`;
}

/** A finished placeholder for a barrier that has run. */
const DONE: Item = { id: "", room: "", text: { type: "text", body: "" }, ts: 0, state: "acked", retries: 0 };
