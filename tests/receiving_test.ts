/**
 * Specification of lib/client/receiving.ts on its own, with the server's answers scripted: live messages for a room
 * not joined or being joined, the catch-up's pages and its pruned notice, paging back, and the one order of arrival.
 * (What needs signed messages, a real server or a lying one is in tests/session_*_test.ts.)
 *
 * @module
 */

import assert from "node:assert/strict";
import type { SessionEvent } from "../lib/client/events.ts";
import { SeenIds } from "../lib/client/home.ts";
import type { InboundContext } from "../lib/client/inbound.ts";
import type { Early } from "../lib/client/joining.ts";
import { Receiving } from "../lib/client/receiving.ts";
import { RoomState } from "../lib/client/rooms.ts";
import { newDevice, SendSequence } from "../lib/client/sequence.ts";
import { roomKeysFromMaster } from "../lib/crypto.ts";
import { foldName } from "../lib/names.ts";
import type { ClientMessage, ServerMessage, ServerMessageOf } from "../lib/protocol.ts";

async function joinedRoom(name: string, latestSeq: number): Promise<RoomState> {
  const keys = await roomKeysFromMaster(new Uint8Array(32).fill(7));
  const params = { salt: new Uint8Array(16).fill(1), iterations: 600_000, accessPub: keys.accessPub, epoch: 0 };
  return new RoomState({
    keys,
    context: { serverPub: new Uint8Array(32).fill(9), room: name, accessPub: keys.accessPub, epoch: 0 },
    pin: { name, ...params },
    latestSeq,
    sending: new SendSequence(newDevice()),
    seen: new SeenIds(),
  });
}

/** A relayed item that fails to open (no valid envelope): counted as a forgery, never shown. */
function junk(seq: number, room = "general"): ServerMessageOf<"message"> {
  return { type: "message", seq, sent_at: 1, envelope: { room, from: "mallory", junk: true } } as never;
}

/** A Receiving over the given rooms, answering each request with `answer`, recording what it does. */
function receivingOver(
  rooms: RoomState[],
  options: {
    answer?: (message: ClientMessage) => unknown;
    early?: Map<string, Early>;
    heldBytes?: number;
    historyPage?: number;
  } = {},
) {
  const events: SessionEvent[] = [];
  const forged: { room: string; from: string; seq?: number }[] = [];
  const requests: ClientMessage[] = [];
  const context = {
    forged: (room: string | undefined, from: string, seq?: number) => forged.push({ room: room ?? "", from, seq }),
    onEvent: (event: SessionEvent) => events.push(event),
    storedOwn: () => {},
  } as unknown as InboundContext;
  const receiving = new Receiving({
    room: (name) => rooms.find((r) => foldName(r.name) === foldName(name)),
    early: (name) => options.early?.get(name),
    request: <T extends ServerMessage["type"]>(message: ClientMessage, _replyType: T) => {
      requests.push(message);
      return Promise.resolve(options.answer?.(message) as ServerMessageOf<T>);
    },
    context: () => context,
    forged: (room, from, seq) => forged.push({ room, from, seq }),
    limits: () => options.historyPage === undefined ? undefined : { history_page: options.historyPage } as never,
    onEvent: (event) => events.push(event),
    changed: () => {},
    heldBytes: options.heldBytes ?? 1024,
    catchUpPages: 1000,
  });
  return { receiving, events, forged, requests };
}

Deno.test("a live message for a room this connection is not in is counted like a forgery, never shown", async () => {
  const general = await joinedRoom("general", 0);
  const { receiving, events, forged, requests } = receivingOver([general]);
  receiving.relayed(junk(5, "elsewhere"), 100);
  receiving.relayed({ type: "message", seq: 6, sent_at: 1, envelope: {} } as never, 100);
  await receiving.settled();
  assert.deepEqual(forged, [
    { room: "elsewhere", from: "mallory", seq: 5 },
    { room: "(no room)", from: "(unknown sender)", seq: 6 },
  ]);
  assert.deepEqual(events, []);
  assert.deepEqual(requests, []);
});

Deno.test("live messages of a room being joined wait for its state, up to the byte bound; the rest are dropped", async () => {
  const waiting: Early = { early: [], bytes: 0 };
  const { receiving, events, forged } = receivingOver([], {
    early: new Map([["general", waiting]]),
    heldBytes: 100,
  });
  for (const [seq, bytes] of [[1, 60], [2, 30], [3, 20], [4, 10]]) receiving.relayed(junk(seq), bytes);
  await receiving.settled();
  // 60 + 30 fit, 20 more would pass 100, the last 10 fit exactly: nothing opened, shown or counted yet.
  assert.deepEqual(waiting.early.map((m) => (m as { seq: number }).seq), [1, 2, 4]);
  assert.equal(waiting.bytes, 100);
  assert.deepEqual(events, []);
  assert.deepEqual(forged, []);
});

Deno.test("a catch-up follows the pages from the last seq seen, and says once that retention removed messages", async () => {
  const general = await joinedRoom("general", 3);
  general.held = { items: [], bytes: 0, overflowed: false };
  const pages = [
    { messages: [junk(11), junk(12)], pruned_through: 5, more: true },
    { messages: [junk(13)], pruned_through: 8, more: true },
    { messages: [], pruned_through: 8, more: false },
  ];
  const { receiving, events, forged, requests } = receivingOver([general], {
    answer: () => ({ type: "since", room: "general", ...pages.shift() }),
  });
  assert.equal(await receiving.catchUp(general), 0);
  assert.deepEqual(requests, [3, 12, 13].map((after_seq) => ({ type: "since", room: "general", after_seq })));
  assert.equal(general.lastSeq, 13);
  assert.deepEqual(events, [{ kind: "pruned", room: "general", through: 5 }]);
  assert.deepEqual(forged.map((f) => f.seq), [11, 12, 13]);
});

Deno.test("paging back asks for one page at most and at least one message, before the oldest seq seen", async () => {
  const general = await joinedRoom("general", 100);
  const { receiving, events, requests } = receivingOver([general], {
    historyPage: 50,
    answer: (message) => ({
      type: "history",
      room: "general",
      // Messages that do not open still move the paging back.
      messages: [junk((message as { before_seq: number }).before_seq - 1)],
      more: true,
    }),
  });
  assert.deepEqual(await receiving.older(general, 500), { shown: 0, more: true });
  assert.deepEqual(await receiving.older(general, 0), { shown: 0, more: true });
  assert.deepEqual(requests, [
    { type: "history", room: "general", before_seq: 101, limit: 50 },
    { type: "history", room: "general", before_seq: 100, limit: 1 },
  ]);
  assert.equal(general.oldestSeq, 99);
  assert.deepEqual(events, [
    { kind: "older", room: "general", messages: [], more: true },
    { kind: "older", room: "general", messages: [], more: true },
  ]);
});

Deno.test("jobs run in the order queued, one at a time, and a failing job does not stop the ones after it", async () => {
  const { receiving } = receivingOver([]);
  const order: string[] = [];
  const slow = receiving.inOrder(async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    order.push("slow");
  });
  const failing = receiving.inOrder(() => {
    order.push("failing");
    throw new Error("boom");
  });
  const last = receiving.inOrder(() => order.push("last"));
  await assert.rejects(failing, /boom/);
  await Promise.all([slow, last, receiving.settled()]);
  assert.deepEqual(order, ["slow", "failing", "last"]);
});
