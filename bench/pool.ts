/**
 * Pre-sealed message pools for the load clients. Every benchmark message is a real protocol v2 room message: signed
 * by its sender's identity key for the room instance (server key, room, access key, epoch) with the sender's sequence
 * number, and sealed with lib/message.ts `sealRoomMessage`; its 16-byte id starts with the sender's client number and
 * the message number (both u32 big-endian), so a receiver can tell which message a delivery is from the first 11
 * base64 characters of the id without parsing the frame, and a sampled delivery can be opened, its signature checked,
 * and compared with the body it must carry.
 *
 * All frames of one client have the same length (fixed ts; the body is padded so that body and sequence number
 * together have a fixed width), so frame k of a pool starts at k * frameLength and frames k..k+m-1 are one contiguous
 * slice: a client sends a burst with a single write.
 *
 * @module
 */

import type { RoomKeys } from "../lib/crypto.ts";
import { encodeMessage } from "../lib/frame.ts";
import type { Identity } from "../lib/identity.ts";
import { DEVICE_BYTES, type RoomContext, sealRoomMessage } from "../lib/message.ts";

/** Characters of every plaintext body and its sequence number together, so every frame has the same length. */
export const BODY_CHARS = 64;
/** Fixed sender timestamp of pooled envelopes, so that frames have a fixed length. */
export const POOL_TS = 1_700_000_000_000;

/**
 * The 16-byte id of message `k` of client `client`: u32be(client) u32be(k) and eight fixed bytes.
 *
 * @param client the sender's client number
 * @param k the message number
 * @returns the id
 */
export function messageId(client: number, k: number): Uint8Array {
  const id = new Uint8Array(16);
  const view = new DataView(id.buffer);
  view.setUint32(0, client);
  view.setUint32(4, k);
  id.set([0x61, 0x65, 0x73, 0x62, 0x65, 0x6e, 0x63, 0x68], 8); // "aesbench"
  return id;
}

/**
 * The plaintext body that message `k` of client `client` carries.
 *
 * @param client the sender's client number
 * @param k the message number
 * @returns exactly BODY_CHARS characters
 */
export function messageBody(client: number, k: number): string {
  // Message k carries the sequence number k + 1, whose digits the padding makes up for.
  return `bench message ${client}:${k} `.padEnd(BODY_CHARS - String(k + 1).length, ".");
}

/**
 * The device id of a benchmark client: its number, so that every process seals its messages alike.
 *
 * @param client the client number
 * @returns 16 bytes
 */
export function benchDevice(client: number): Uint8Array<ArrayBuffer> {
  const device = new Uint8Array(DEVICE_BYTES);
  new DataView(device.buffer).setUint32(12, client);
  return device;
}

const SEXTET = new Uint8Array(256);
for (const [i, c] of [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"].entries()) {
  SEXTET[c.charCodeAt(0)] = i;
}

/**
 * Reads the client and message numbers from the base64 id that starts at `at` in a frame body.
 *
 * @param bytes the frame body
 * @param at index of the id's first base64 character
 * @returns client * stride + k, where stride is the pool size of the scenario
 */
export function readMessageIndex(bytes: Uint8Array, options: { at: number; stride: number }): number {
  const at = options.at;
  const s0 = SEXTET[bytes[at]], s1 = SEXTET[bytes[at + 1]], s2 = SEXTET[bytes[at + 2]], s3 = SEXTET[bytes[at + 3]];
  const s4 = SEXTET[bytes[at + 4]], s5 = SEXTET[bytes[at + 5]], s6 = SEXTET[bytes[at + 6]], s7 = SEXTET[bytes[at + 7]];
  const s8 = SEXTET[bytes[at + 8]], s9 = SEXTET[bytes[at + 9]], s10 = SEXTET[bytes[at + 10]];
  // 24 bits per four characters: bytes 0-2, 3-5, then 6-7 from the last three characters.
  const a = (s0 << 18) | (s1 << 12) | (s2 << 6) | s3;
  const b = (s4 << 18) | (s5 << 12) | (s6 << 6) | s7;
  const c = (s8 << 10) | (s9 << 4) | (s10 >> 2); // 16 bits: bytes 6 and 7
  const client = a * 256 + (b >>> 16);
  const k = (b & 0xffff) * 65536 + c;
  return client * options.stride + k;
}

/**
 * Finds where the id's base64 starts in a relayed `message` frame body: after `"id":"` inside the envelope.
 *
 * @param body the frame body
 * @returns the index of the first id character, or -1
 */
export function findIdStart(body: Uint8Array): number {
  // `{"type":"message","seq":` is 24 bytes, the envelope starts well after it.
  const end = body.length - 8;
  for (let i = 40; i < end; i++) {
    if (
      body[i] === 0x22 && body[i + 1] === 0x69 && body[i + 2] === 0x64 && body[i + 3] === 0x22 &&
      body[i + 4] === 0x3a
    ) {
      return i + 6;
    }
  }
  return -1;
}

/** The pooled frames of one client: `count` frames of `frameLength` bytes each, back to back. */
export interface ClientPool {
  /** Frames in the pool. */
  count: number;
  /** Bytes of each frame. */
  frameLength: number;
  /** All frames, back to back. */
  bytes: Uint8Array;
}

/**
 * Seals `count` send frames for one client, from message number 0: message k is number k + 1 of the client's device
 * in its room, acked 0 (a valid claim: nothing before it is settled), no void.
 *
 * @param keys the room keys
 * @param who.context the room instance (server key, room, access key, epoch)
 * @param who.nick the sender nick
 * @param who.identity the sender's identity
 * @param who.client the client number written into each id
 * @param who.count how many messages
 * @param who.from a smaller pool of the same client to extend
 * @returns the pool
 */
export async function sealPool(
  keys: RoomKeys,
  who: { context: RoomContext; nick: string; identity: Identity; client: number; count: number; from?: ClientPool },
): Promise<ClientPool> {
  const { context, nick, client, count } = who;
  const device = benchDevice(client);
  const start = who.from?.count ?? 0;
  const frames: Uint8Array[] = [];
  const BATCH = 512;
  for (let k = start; k < count; k += BATCH) {
    const sealing: Promise<Uint8Array>[] = [];
    for (let j = k; j < Math.min(count, k + BATCH); j++) {
      sealing.push(
        sealRoomMessage(keys, {
          context,
          from: nick,
          identity: who.identity,
          content: { type: "text", body: messageBody(client, j) },
          sequence: { device, n: j + 1, acked: 0, void: [] },
          id: messageId(client, j),
          ts: POOL_TS,
        }).then((envelope) => encodeMessage({ type: "send", envelope })),
      );
    }
    frames.push(...await Promise.all(sealing));
  }
  const frameLength = who.from?.frameLength ?? frames[0]?.length ?? 0;
  const bytes = new Uint8Array(count * frameLength);
  if (who.from) bytes.set(who.from.bytes.subarray(0, start * frameLength), 0);
  for (let i = 0; i < frames.length; i++) {
    if (frames[i].length !== frameLength) throw new Error(`pool frame length ${frames[i].length} != ${frameLength}`);
    bytes.set(frames[i], (start + i) * frameLength);
  }
  return { count, frameLength, bytes };
}
