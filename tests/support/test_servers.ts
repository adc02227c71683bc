/**
 * One face for the two in-process servers the client's session tests run against: the real chat core (the Hub over a
 * Store on a temporary file, tests/support/hub_link.ts) and the v2 double (tests/support/evil_server.ts, honest unless
 * told otherwise). A test written against {@link TestServer} runs on both.
 *
 * @module
 */

import type { Dial } from "../../lib/client/link.ts";
import { importEd25519Seed } from "../../lib/crypto.ts";
import type { Envelope } from "../../lib/envelope.ts";
import { EvilServer } from "./evil_server.ts";
import { HubServer } from "./hub_link.ts";

/** What the session tests ask of a server. */
export interface TestServer {
  /** "hub" (the real chat core) or "double". */
  readonly kind: "hub" | "double";
  /** The dial function sessions connect with. */
  readonly dial: Dial;
  /** While true, dials fail as if the server were down. */
  down: boolean;
  /** Drops every connection at once, as a network failure would. */
  dropAll(): void;
  /** A restart: connections dropped, what is stored kept. */
  restart(): void;
  /** Rewrites what the server sends to clients: the messages to deliver instead (undefined: as it is). */
  rewrite(fn: ((msg: Record<string, unknown>) => Record<string, unknown>[] | undefined) | undefined): void;
  /** Makes the next `n` stores fail (`storage_failed`). */
  failStores(n: number): void;
  /** Stores failed so far. */
  readonly failedStores: number;
  /** The stored envelopes of a room, oldest first. */
  stored(room: string): Envelope[];
  /** A room's parameters, as stored. */
  room(name: string): { name: string; salt: Uint8Array; iterations: number; accessPub: Uint8Array } | undefined;
  /** The server's key. */
  serverKey(): Uint8Array;
  /** Deletes a room and what it stored (an operator's `admin delete-room`). */
  deleteRoom(name: string): void;
  /** Stops it and removes what it made. */
  close(): Promise<void>;
}

/**
 * Starts one kind of server.
 *
 * @param kind "hub" or "double"
 * @returns the server
 */
export async function startTestServer(kind: "hub" | "double"): Promise<TestServer> {
  return kind === "hub" ? await hubServer() : await doubleServer();
}

async function hubServer(): Promise<TestServer> {
  const server = await HubServer.start();
  const { publicKey } = await importEd25519Seed(server.store.serverSeed);
  return {
    kind: "hub",
    get dial() {
      return server.dial;
    },
    get down() {
      return server.down;
    },
    set down(value: boolean) {
      server.down = value;
    },
    dropAll: () => server.dropAll(),
    restart: () => server.restart(),
    rewrite: (fn) => server.rewrite = fn,
    failStores: (n) => server.failBatches(n),
    get failedStores() {
      return server.failedBatches;
    },
    stored: (room) => server.stored(room).map((row) => JSON.parse(row.envelope)),
    room: (name) => server.store.getRoom(name),
    serverKey: () => publicKey,
    deleteRoom: (name) => void server.store.deleteRoom(name),
    close: () => server.close(),
  };
}

async function doubleServer(): Promise<TestServer> {
  const server = await EvilServer.start();
  return {
    kind: "double",
    get dial() {
      return server.dial;
    },
    get down() {
      return server.down;
    },
    set down(value: boolean) {
      server.down = value;
    },
    dropAll: () => server.dropAll(),
    restart: () => server.dropAll(),
    rewrite: (fn) => server.outgoing = fn,
    failStores: (n) => server.failSends(n),
    get failedStores() {
      return server.failedSends;
    },
    stored: (room) => server.stored(room).map((row) => row.envelope),
    room: (name) => {
      const r = server.rooms.get(name);
      return r && {
        name: r.name,
        salt: Uint8Array.fromBase64(r.salt),
        iterations: r.iterations,
        accessPub: Uint8Array.fromBase64(r.access_pub),
      };
    },
    serverKey: () => server.key,
    deleteRoom: (name) => void server.rooms.delete(name),
    close: () => Promise.resolve(),
  };
}
