/**
 * The real chat core in-process, for Session tests: a {@link Hub} over a {@link Store} on a temporary file, and a
 * dial function that connects a Session to it without a socket. Frames really are encoded, parsed and handled in
 * order, on later turns of the event loop (as over a network). It drives the hub only through its public surface
 * (attach, handle, detach, flush, shutdown, the Peer interface), so server changes do not break it.
 *
 * Faults a test can cause: the server down (dials fail), every connection dropped at once, acks withheld or messages
 * rewritten, and storage failures.
 *
 * @module
 */

import { encodeMessage, FrameReader } from "../../lib/frame.ts";
import { type ClientMessage, parseClientMessage, ProtocolError, type ServerLimits } from "../../lib/protocol.ts";
import { type Dial, type Link, LinkError, type LinkEvents } from "../../lib/client/link.ts";
import { Hub, type Member, type Peer } from "../../lib/server/hub.ts";
import { Logger } from "../../lib/server/log.ts";
import { Store, StoreError } from "../../lib/server/store.ts";

/** The limits of a default server. */
export const HUB_LIMITS: ServerLimits = {
  max_frame: 65536,
  max_body: 16384,
  history: 50,
  history_page: 500,
  rate: 0,
  burst: 40,
  send_queue: 1048576,
  idle_timeout_ms: 120000,
  max_rooms: 20,
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** One in-process connection: the client's {@link Link} and the hub's {@link Peer}. */
class HubLink implements Link, Peer {
  #server: HubServer;
  #events: LinkEvents;
  #member: Member;
  #closed = false;
  /** Client messages are handled one at a time, in order, each on a later turn. */
  #handling: Promise<void> = Promise.resolve();
  /** Server frames wait here and are delivered on a later turn, in order. */
  #toClient: Uint8Array[] = [];
  #delivering = false;

  constructor(server: HubServer, events: LinkEvents) {
    this.#server = server;
    this.#events = events;
    this.#member = server.hub.attach(this, "in-process");
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(frame: Uint8Array): void {
    if (this.#closed) return;
    const bodies = new FrameReader({ maxFrame: HUB_LIMITS.max_frame }).push(frame);
    this.#handling = this.#handling.then(async () => {
      await tick();
      for (const body of bodies) {
        if (this.#closed) return;
        let msg: ClientMessage;
        try {
          msg = parseClientMessage(body);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          this.send(encodeMessage({ type: "error", code: err.code, message: err.message, id: err.id }));
          if (err.fatal) this.close();
          continue;
        }
        if (this.#server.intercept?.(msg, this) === false) continue;
        await this.#server.hub.handle(this.#member, msg);
      }
    });
  }

  flushed(): Promise<void> {
    return this.#handling;
  }

  /** Peer: a frame from the hub to this client. */
  send(frame: Uint8Array): void {
    if (this.#closed) return;
    if (this.#server.withhold?.(frame) === true) return;
    const rewrite = this.#server.rewrite;
    if (rewrite) {
      const msg = JSON.parse(new TextDecoder().decode(frame.subarray(4)));
      const out = rewrite(msg);
      if (out !== undefined) {
        for (const m of out) this.#deliver(encodeMessage(m));
        return;
      }
    }
    this.#deliver(frame);
  }

  #deliver(frame: Uint8Array): void {
    this.#toClient.push(frame);
    if (this.#delivering) return;
    this.#delivering = true;
    setTimeout(() => {
      this.#delivering = false;
      const frames = this.#toClient;
      this.#toClient = [];
      for (const f of frames) {
        if (this.#closed) return;
        this.#events.body(f.subarray(4));
      }
    }, 0);
  }

  /** Peer: the hub says goodbye and closes. */
  close(reason?: string, message?: string): void {
    if (this.#closed) return;
    if (reason !== undefined) {
      // What the hub queued, then bye, then the end, like connection.ts.
      this.send(encodeMessage({ type: "bye", reason, message }));
      setTimeout(() => this.#end(new LinkError("lost", "the server closed the connection")), 0);
      return;
    }
    this.#end(new LinkError("closed", "closed"));
  }

  /** Drops the connection as a network failure would. */
  drop(): void {
    this.#end(new LinkError("lost", "connection error: reset by the test"));
  }

  #end(error: LinkError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.hub.detach(this.#member);
    this.#server.links.delete(this);
    setTimeout(() => this.#events.lost(error), 0);
  }
}

/** A hub and its store, reachable through {@link HubServer.dial}. */
export class HubServer {
  /** The chat core. */
  hub: Hub;
  /** Its message log on a temporary file. */
  store: Store;
  /** The temporary directory. */
  readonly dir: string;
  /** Open connections. */
  readonly links = new Set<HubLink>();
  /** While true, dials fail as if the server were down. */
  down = false;
  /** Sees every client message before the hub; returning false drops it. */
  intercept?: (msg: ClientMessage, link: Link) => boolean | void;
  /** Sees every frame to a client; returning true withholds it (a lost ack, say). */
  withhold?: (frame: Uint8Array) => boolean;
  /** Rewrites every message to a client: the messages to deliver instead (undefined: as it is). */
  rewrite?: (msg: Record<string, unknown>) => Record<string, unknown>[] | undefined;
  #failingBatches = 0;
  /** Batches refused so far by {@link HubServer.failBatches}. */
  failedBatches = 0;
  #limits: ServerLimits;

  private constructor(dir: string, options: { limits: ServerLimits }) {
    this.dir = dir;
    this.#limits = options.limits;
    this.store = this.#openStore();
    this.hub = this.#newHub();
  }

  #newHub(): Hub {
    return new Hub(this.store, { limits: this.#limits, version: "test", log: new Logger({ sink: () => {} }) });
  }

  #openStore(): Store {
    const store = Store.open(`${this.dir}/aeschat.db`);
    const append = store.appendBatch.bind(store);
    // A storage fault on demand: the next batches fail as a full disk would make them.
    store.appendBatch = (rows) => {
      if (this.#failingBatches > 0) {
        this.#failingBatches--;
        this.failedBatches++;
        throw new StoreError("write", "injected storage failure");
      }
      return append(rows);
    };
    return store;
  }

  /**
   * Starts a server on a fresh temporary database.
   *
   * @param options.limits limits announced and enforced (default {@link HUB_LIMITS})
   */
  static async start(options: { limits?: Partial<ServerLimits> } = {}): Promise<HubServer> {
    const dir = await Deno.makeTempDir({ prefix: "aeschat-hub-" });
    return new HubServer(dir, { limits: { ...HUB_LIMITS, ...options.limits } });
  }

  /** The dial function sessions connect with. */
  get dial(): Dial {
    return (events) => {
      if (this.down) return Promise.reject(new LinkError("unreachable", "cannot connect: the test server is down"));
      const link = new HubLink(this, events);
      this.links.add(link);
      return Promise.resolve(link);
    };
  }

  /**
   * Makes the next `n` batches fail to store (`storage_failed` to their senders).
   *
   * @param n how many
   */
  failBatches(n: number): void {
    this.#failingBatches = n;
  }

  /** Drops every connection at once, as a network failure or a crashed server would. */
  dropAll(): void {
    for (const link of [...this.links]) link.drop();
  }

  /**
   * Restarts the hub on the same database (a crash and restart: the connections drop, the store survives).
   */
  restart(): void {
    this.dropAll();
    this.store.close();
    this.store = this.#openStore();
    this.hub = this.#newHub();
  }

  /**
   * The stored messages of a room, oldest first.
   *
   * @param room the room
   * @returns seq and envelope JSON of each
   */
  stored(room = "general"): { seq: number; envelope: string }[] {
    return this.store.after(room, { afterSeq: 0, limit: 1_000_000 }).map((m) => ({
      seq: m.seq,
      envelope: m.envelope,
    }));
  }

  /** Stops the hub, closes the store and removes the directory. */
  async close(): Promise<void> {
    this.hub.shutdown();
    this.dropAll();
    this.store.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
