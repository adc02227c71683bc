/**
 * Per-sender sequence values (PROTOCOL.md "Sequence"): the sender's side, which numbers its messages in a room and
 * says which earlier numbers are settled and which were refused; and the receiver's side, which detects an envelope
 * replayed as new, one sender's messages out of order, and a message withheld, without a false alarm for a second
 * device, a refused send, a nick change, retention or history paging. Pure logic: the session feeds it.
 *
 * @module
 */

import { DEVICE_BYTES, MAX_VOID_RANGES, type Sequence } from "../message.ts";

/** Most missing ranges remembered per sender device (older holes are forgotten first). */
const MAX_MISSING_RANGES = 64;
/** Most sender devices tracked per room (a member inventing device ids cannot grow this without bound). */
const MAX_DEVICES = 4096;

/**
 * A fresh device id. The reference client makes one each time it starts, so two programs sharing one home (or a
 * restart) never reuse a number: a receiver simply sees a new device.
 *
 * @example
 * ```ts
 * const device = newDevice(); // 16 random bytes
 * ```
 * @returns 16 random bytes
 */
export function newDevice(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(DEVICE_BYTES));
}

/**
 * The sender's numbering for one room on one device.
 *
 * @example
 * ```ts
 * const numbering = new SendSequence(newDevice());
 * const sequence = numbering.take(); // seal with it
 * numbering.settle(sequence.n, "stored"); // on ack
 * ```
 */
export class SendSequence {
  #device: Uint8Array<ArrayBuffer>;
  #next = 1;
  #unsettled = new Set<number>();
  /** Refused numbers not yet announced in a stored message, ascending. */
  #voids: number[] = [];
  /** Every void up to this has been carried by a message the server stored. */
  #announced = 0;
  /** The `acked` value of each message in flight, to learn what was announced once it is stored. */
  #ackedOf = new Map<number, number>();

  /** @param device this device's 16-byte id */
  constructor(device: Uint8Array<ArrayBuffer>) {
    this.#device = device;
  }

  /** The next number to be used. */
  get next(): number {
    return this.#next;
  }

  /** Every number up to this is settled. */
  get settledThrough(): number {
    let low = this.#next;
    for (const n of this.#unsettled) low = Math.min(low, n);
    return low - 1;
  }

  /**
   * Numbers the next message: its `n`, the `acked` mark, and the void ranges up to it.
   *
   * @returns the sequence values to sign
   */
  take(): Sequence {
    const n = this.#next++;
    this.#unsettled.add(n);
    let acked = this.settledThrough;
    const ranges = toRanges(this.#voids.filter((v) => v <= acked));
    if (ranges.length > MAX_VOID_RANGES) {
      // Claim only as far as the listed voids reach, so every refused number up to `acked` is listed.
      ranges.length = MAX_VOID_RANGES;
      acked = Math.min(acked, ranges[MAX_VOID_RANGES - 1][1]);
    }
    this.#ackedOf.set(n, acked);
    return { device: this.#device, n, acked, void: ranges };
  }

  /**
   * Records the fate of a number: stored (acked, or duplicate_id) or finally refused.
   *
   * @param n the number
   * @param outcome what the server did
   */
  settle(n: number, outcome: "stored" | "refused"): void {
    if (!this.#unsettled.delete(n)) return;
    const acked = this.#ackedOf.get(n) ?? 0;
    this.#ackedOf.delete(n);
    if (outcome === "refused") {
      this.#voids.push(n);
      this.#voids.sort((a, b) => a - b);
      return;
    }
    // A stored message carried every void up to its `acked`: receivers have them now.
    if (acked > this.#announced) {
      this.#announced = acked;
      this.#voids = this.#voids.filter((v) => v > acked);
    }
  }
}

function toRanges(numbers: number[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const n of numbers) {
    const last = ranges[ranges.length - 1];
    if (last && n === last[1] + 1) last[1] = n;
    else if (!last || n > last[1]) ranges.push([n, n]);
  }
  return ranges;
}

/** What a receiver concludes about one message. */
export type Arrival =
  /** In order (or the first seen from this device). */
  | { kind: "ok" }
  /** Arrived after a later message whose sender had already seen it stored: held back by the server. */
  | { kind: "late" }
  /** A number at or below one already seen, that was never missing: an old message replayed as new. */
  | { kind: "replayed" };

/** A hole that a later message proves should have arrived. */
export interface Withheld {
  /** Sender identity key (base64). */
  key: string;
  /** Sender device (base64). */
  device: string;
  /** The missing numbers, inclusive. */
  first: number;
  /** Last missing number. */
  last: number;
  /** The server seq of the message just before the hole (ask `since` from here to check again). */
  afterSeq: number;
}

interface Missing {
  first: number;
  last: number;
  /** Server seq of the message before the hole. */
  afterSeq: number;
}

interface DeviceState {
  high: number;
  /** Server seq at which `high` arrived. */
  highSeq: number;
  /** Missing numbers as inclusive ranges, each with the seq of the message before it. */
  missing: Missing[];
  /** Missing numbers already reported withheld: no longer asked for, but late (not replayed) if they arrive. */
  reported: Missing[];
  /** The largest `acked` seen from this device. */
  claimed: number;
}

/**
 * The receiver's view of every sender device in one room, within one run of the client.
 *
 * @example
 * ```ts
 * const tracker = new SenderTracker();
 * const arrival = tracker.observe({ key, sequence, seq });
 * for (const hole of tracker.withheld()) recheck(hole.afterSeq);
 * ```
 */
export class SenderTracker {
  #devices = new Map<string, DeviceState>();

  /** How many sender devices are tracked (at most 4096; the oldest are forgotten first). */
  get devices(): number {
    return this.#devices.size;
  }

  /**
   * Records a message that arrived in the forward direction (join history, live, since), in arrival order.
   * Messages fetched backwards (/history) must not be passed here.
   *
   * @param message.key the signer's identity key, base64
   * @param message.sequence its signed sequence values
   * @param message.seq the server seq it arrived with
   * @returns what the receiver should make of it
   */
  observe(message: { key: string; sequence: Sequence; seq: number }): Arrival {
    const { sequence } = message;
    const id = deviceId(message.key, sequence.device.toBase64());
    const n = sequence.n;
    let state = this.#devices.get(id);
    let arrival: Arrival = { kind: "ok" };
    if (!state) {
      // The first message seen from a device sets the start: what it numbered before was stored before it (an honest
      // sender never reuses a number, and seals a refused text again under a new one), so it never arrives later.
      if (this.#devices.size >= MAX_DEVICES) this.#devices.delete(this.#devices.keys().next().value!);
      state = { high: n, highSeq: message.seq, missing: [], reported: [], claimed: sequence.acked };
      this.#devices.set(id, state);
    } else if (n > state.high) {
      if (n > state.high + 1) {
        state.missing.push({ first: state.high + 1, last: n - 1, afterSeq: state.highSeq });
        if (state.missing.length > MAX_MISSING_RANGES) state.missing.shift();
      }
      state.high = n;
      state.highSeq = message.seq;
    } else if (subtract(state, "missing", n, n) || subtract(state, "reported", n, n)) {
      // Delivered after a later message of the same sender (even once reported withheld): an honest server delivers
      // in the order it stored, and an honest sender's numbers increase in that order.
      arrival = { kind: "late" };
    } else {
      arrival = { kind: "replayed" };
    }
    state.claimed = Math.max(state.claimed, sequence.acked);
    for (const [first, last] of sequence.void) subtract(state, "missing", first, last);
    return arrival;
  }

  /**
   * Holes that some later message proves were stored (its `acked` covers them) and that were not declared void:
   * ask the server again from `afterSeq`, then call this again; what is still listed was withheld.
   *
   * @returns the holes, one per missing range
   */
  withheld(): Withheld[] {
    const holes: Withheld[] = [];
    for (const [id, state] of this.#devices) {
      const [key, device] = id.split(" ");
      for (const m of state.missing) {
        if (m.first > state.claimed) continue;
        holes.push({ key, device, first: m.first, last: Math.min(m.last, state.claimed), afterSeq: m.afterSeq });
      }
    }
    return holes;
  }

  /**
   * Forgets every hole: messages were removed by retention, so a missing number proves nothing. Order and replay
   * checks continue from what was seen.
   */
  forgetHoles(): void {
    for (const state of this.#devices.values()) state.missing = state.reported = [];
  }

  /**
   * Stops reporting a hole once it has been reported (one warning per hole); its numbers, should they arrive after
   * all, are late.
   *
   * @param hole a hole from {@link withheld}
   */
  dismiss(hole: Withheld): void {
    const state = this.#devices.get(deviceId(hole.key, hole.device));
    if (!state || !subtract(state, "missing", hole.first, hole.last)) return;
    state.reported.push({ first: hole.first, last: hole.last, afterSeq: hole.afterSeq });
    if (state.reported.length > MAX_MISSING_RANGES) state.reported.shift();
  }
}

/** The tracker's name for a sender device: base64 holds "/" but never a space. */
function deviceId(key: string, device: string): string {
  return `${key} ${device}`;
}

/** Removes the numbers first..last from the missing (or reported) ranges; returns whether any was in them. */
function subtract(state: DeviceState, list: "missing" | "reported", first: number, last: number): boolean {
  let changed = false;
  state[list] = state[list].flatMap((m) => {
    if (m.last < first || m.first > last) return [m];
    changed = true;
    const parts = [];
    if (m.first < first) parts.push({ ...m, last: first - 1 });
    if (m.last > last) parts.push({ ...m, first: last + 1 });
    return parts;
  });
  return changed;
}
