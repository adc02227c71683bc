/**
 * Driving the hub in-process, as a client would over a socket: a fake {@link Peer} that parses and keeps every frame
 * the hub sends, and the protocol v2 opening and join over it (the same code the wire client uses over TCP).
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeMessage, FrameReader } from "../../lib/frame.ts";
import type { RoomKeys } from "../../lib/crypto.ts";
import type { Identity, Rotation } from "../../lib/identity.ts";
import {
  parseClientMessage,
  parseServerMessage,
  type ServerMessage,
  type ServerMessageOf as Msg,
} from "../../lib/protocol.ts";
import type { Hub, Member, Peer } from "../../lib/server/hub.ts";
import { openConnection, proveFor, testIdentity } from "./wire.ts";

/** A peer that parses and keeps every frame, as a client would receive it. */
export class FakePeer implements Peer {
  /** Received and not yet taken. */
  inbox: ServerMessage[] = [];
  /** Every message ever received. */
  all: ServerMessage[] = [];
  /** Set once the hub closed the connection. */
  closed: { reason: string; message?: string } | undefined;
  /** Called when the hub closes the connection (a test detaches the member then, as a connection would). */
  onClose: (() => void) | undefined;

  send(frame: Uint8Array): void {
    const bodies = new FrameReader({ maxFrame: 64 * 1024 * 1024 }).push(frame);
    assert.equal(bodies.length, 1, "one send is exactly one frame");
    assert.equal(bodies[0].length + 4, frame.length, "the frame has no trailing bytes");
    const msg = parseServerMessage(bodies[0]);
    this.inbox.push(msg);
    this.all.push(msg);
  }

  close(reason: string, message?: string): void {
    if (this.closed !== undefined) return;
    this.closed = { reason, message };
    this.onClose?.();
  }

  /** The close reason, if closed (a method, so that earlier assertions do not narrow it away). */
  closedReason(): string | undefined {
    return this.closed?.reason;
  }

  /** Takes the first message of a type; fails if there is none. */
  take<T extends ServerMessage["type"]>(type: T): Msg<T> {
    const i = this.inbox.findIndex((m) => m.type === type);
    assert.ok(i >= 0, `no ${type} in ${JSON.stringify(this.inbox).slice(0, 400)}`);
    return this.inbox.splice(i, 1)[0] as Msg<T>;
  }

  /** Takes the first message of any of the types; fails if there is none. */
  takeOf(types: ServerMessage["type"][]): ServerMessage {
    const i = this.inbox.findIndex((m) => types.includes(m.type));
    assert.ok(i >= 0, `no ${types.join("/")} in ${JSON.stringify(this.inbox).slice(0, 400)}`);
    return this.inbox.splice(i, 1)[0];
  }

  /** Takes every message of a type. */
  takeAll<T extends ServerMessage["type"]>(type: T): Msg<T>[] {
    const got = this.inbox.filter((m) => m.type === type) as Msg<T>[];
    this.inbox = this.inbox.filter((m) => m.type !== type);
    return got;
  }

  /** Takes everything received. */
  drain(): ServerMessage[] {
    const out = this.inbox;
    this.inbox = [];
    return out;
  }

  /** Takes the only message left, asserting there is exactly one. */
  only(): ServerMessage {
    assert.equal(this.inbox.length, 1, `expected one message, got ${JSON.stringify(this.inbox).slice(0, 400)}`);
    return this.inbox.pop()!;
  }
}

/** One in-process connection to a hub. */
export interface HubClient {
  /** The hub's handle. */
  member: Member;
  /** What the hub sent it. */
  peer: FakePeer;
  /** Its canonical nick (once logged in). */
  nick: string;
  /** Its identity. */
  identity: Identity;
  /** The server's key. */
  serverPub: Uint8Array;
  /** The keys of each room joined, by canonical name. */
  rooms: Map<string, RoomKeys>;
}

/**
 * Hands a message to the hub as a connection would: encoded, parsed, and handled to the end.
 *
 * @param hub the hub
 * @param member the connection
 * @param message the message
 */
export async function deliver(hub: Hub, member: Member, message: object): Promise<void> {
  const body = encodeMessage(message).subarray(4);
  await hub.handle(member, parseClientMessage(body));
}

/**
 * Attaches a connection and opens it (hello, server, login).
 *
 * @param hub the hub
 * @param nick the nick to log in with
 * @param options.identity the identity (default: the test identity of the nick)
 * @param options.remote the remote address (default 127.0.0.1 and a fresh port)
 * @param options.rotation a rotation statement to present
 * @returns the client, and the welcome or the error that refused the login
 */
export async function openHubClient(
  hub: Hub,
  nick: string,
  options: { identity?: Identity; remote?: string; rotation?: Rotation } = {},
): Promise<{ client: HubClient; reply: Msg<"welcome"> | Msg<"error"> }> {
  const peer = new FakePeer();
  const member = hub.attach(peer, options.remote ?? `127.0.0.1:${40000 + nextPort++}`);
  peer.onClose = () => hub.detach(member);
  const identity = options.identity ?? await testIdentity(nick);
  const { serverPub, reply } = await openConnection({
    write: (message) => deliver(hub, member, message),
    until: (types) => Promise.resolve(peer.takeOf(types)),
  }, { nick, identity, rotation: options.rotation });
  const client = {
    member,
    peer,
    nick: reply.type === "welcome" ? reply.nick : nick,
    identity,
    serverPub,
    rooms: new Map(),
  };
  return { client, reply };
}

let nextPort = 0;

/**
 * Joins (or creates) a room with a passphrase, in-process.
 *
 * @param hub the hub
 * @param client the connection
 * @param room the room, any spelling
 * @param passphrase the passphrase
 * @param options.iterations the PBKDF2 count when creating (default 100000)
 * @returns the joined message or the error (a refused join may never send a challenge)
 */
export async function joinHub(
  hub: Hub,
  client: HubClient,
  room: string,
  passphrase: string,
  options: { iterations?: number } = {},
): Promise<Msg<"joined"> | Msg<"error">> {
  await deliver(hub, client.member, { type: "join", room });
  const challenge = client.peer.takeOf(["challenge", "error"]);
  if (challenge.type === "error") return challenge;
  assert.ok(challenge.type === "challenge");
  const { prove, keys } = await proveFor(challenge, {
    passphrase,
    nick: client.nick,
    serverPub: client.serverPub,
    identity: client.identity,
    iterations: options.iterations,
  });
  await deliver(hub, client.member, prove);
  const reply = client.peer.takeOf(["joined", "error"]) as Msg<"joined"> | Msg<"error">;
  if (reply.type === "joined") client.rooms.set(reply.room, keys);
  return reply;
}
