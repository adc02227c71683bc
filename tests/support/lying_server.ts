/**
 * A server double that lies, for the client's tests: it speaks just enough of the protocol to get a session joined
 * (a welcome, a challenge, a joined, whatever the proof), and then sends whatever the test scripts. A test replaces
 * any answer by overriding {@link LyingServer.answer}.
 *
 * @module
 */

import { encodeMessage } from "../../lib/frame.ts";
import { type ClientMessage, parseClientMessage, type ServerLimits } from "../../lib/protocol.ts";
import { type Dial, type Link, LinkError, type LinkEvents } from "../../lib/client/link.ts";
import { HUB_LIMITS } from "./hub_link.ts";

/** The salt and iterations of the room the double pretends to hold. */
export const LYING_ROOM = { salt: new Uint8Array(16).fill(7), iterations: 100_000 };

/** One connection to the double. */
export class LyingLink implements Link {
  #events: LinkEvents;
  #server: LyingServer;
  #closed = false;
  #queue: Uint8Array[] = [];
  #scheduled = false;

  constructor(server: LyingServer, events: LinkEvents) {
    this.#server = server;
    this.#events = events;
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(frame: Uint8Array): void {
    if (this.#closed) return;
    const msg = parseClientMessage(frame.subarray(4));
    this.#server.received.push(msg);
    setTimeout(() => {
      if (!this.#closed) this.#server.answer(msg, this);
    }, 0);
  }

  flushed(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Sends a message object, JSON text or a raw body to the client (delivered on a later turn, in order).
   *
   * @param message what to send
   */
  send(message: object | string): void {
    if (this.#closed) return;
    this.#queue.push(
      typeof message === "string" ? new TextEncoder().encode(message) : encodeMessage(message).subarray(4),
    );
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      const bodies = this.#queue;
      this.#queue = [];
      for (const body of bodies) if (!this.#closed) this.#events.body(body);
    }, 0);
  }

  /** Drops the connection as a network failure would. */
  drop(): void {
    if (this.#closed) return;
    this.#closed = true;
    setTimeout(() => this.#events.lost(new LinkError("lost", "connection error: reset by the test")), 0);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    setTimeout(() => this.#events.lost(new LinkError("closed", "closed")), 0);
  }
}

/** The double. */
export class LyingServer {
  /** Limits in the welcome (anything, as the test likes). */
  limits: Record<string, unknown> = { ...HUB_LIMITS } satisfies Partial<ServerLimits>;
  /** Every client message received. */
  readonly received: ClientMessage[] = [];
  /** Every connection made. */
  readonly links: LyingLink[] = [];

  /** The dial function sessions connect with. */
  get dial(): Dial {
    return (events) => {
      const link = new LyingLink(this, events);
      this.links.push(link);
      return Promise.resolve(link);
    };
  }

  /** The latest connection. */
  get link(): LyingLink {
    return this.links[this.links.length - 1];
  }

  /**
   * Answers one client message; the default plays a server that lets everyone in. Override it to lie.
   *
   * @param msg what the client sent
   * @param link where to answer
   */
  answer(msg: ClientMessage, link: LyingLink): void {
    switch (msg.type) {
      case "hello":
        return link.send({ type: "welcome", server: "liar", version: 1, nick: msg.nick, limits: this.limits });
      case "join":
        return link.send({
          type: "challenge",
          room: msg.room,
          nonce: new Uint8Array(32).toBase64(),
          salt: LYING_ROOM.salt.toBase64(),
          iterations: LYING_ROOM.iterations,
        });
      case "prove":
        return link.send({ type: "joined", room: msg.room, members: ["alice"], history: [], latest_seq: 0 });
      case "since":
        return link.send({ type: "since", room: "general", after_seq: msg.after_seq, messages: [], more: false });
      case "ping":
        return link.send({ type: "pong" });
      default:
        return;
    }
  }
}
