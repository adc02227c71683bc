/**
 * The bare relay the benchmark compares aeschat against: the same frames and the same protocol v2 handshake messages
 * (it signs the client's nonce with a key of its own, as a client checks), but no validation, no login or join-proof
 * check, no registry and no storage. A `send` is parsed, given a seq, acked at once, serialized once
 * and the same bytes are queued on every other member; each connection's queued frames go out in one write.
 *
 * Run: `deno run --allow-net bench/relay.ts --port 0`; the first stdout line is
 * `aeschat relay listening on HOST:PORT`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { importEd25519Seed, signEd25519 } from "../lib/crypto.ts";
import { encodeFrame, encodeMessage, FrameError, FrameReader } from "../lib/frame.ts";
import { serverInput } from "../lib/identity.ts";

const READ_BUFFER_BYTES = 64 * 1024;
const decoder = new TextDecoder();

interface RelayRoom {
  salt: string;
  iterations: number;
  accessPub: string;
  members: Set<RelayConnection>;
}

const rooms = new Map<string, RelayRoom>();
let lastSeq = 0;
const serverKey = await importEd25519Seed(crypto.getRandomValues(new Uint8Array(32)));

// The same write path as lib/server/connection.ts, so that the comparison is about the work per message only:
// queued frames are copied into pooled chunks of at most 64 KiB, one write per chunk.
const WRITE_CHUNK_BYTES = 64 * 1024;
const SPARE_CHUNK_BYTES = 32 * 1024 * 1024;
const spare: Uint8Array<ArrayBuffer>[][] = [];
let spareBytes = 0;

function takeChunk(n: number): Uint8Array<ArrayBuffer> {
  const size = Math.max(1024, 2 ** Math.ceil(Math.log2(n)));
  const buffer = spare[size]?.pop();
  if (buffer === undefined) return new Uint8Array(size);
  spareBytes -= size;
  return buffer;
}

function giveChunk(buffer: Uint8Array<ArrayBuffer>): void {
  if (spareBytes + buffer.length > SPARE_CHUNK_BYTES) return;
  (spare[buffer.length] ??= []).push(buffer);
  spareBytes += buffer.length;
}

/** One client of the relay: a read loop and a coalescing writer. */
class RelayConnection {
  #conn: Deno.Conn;
  #queue: Uint8Array[] = [];
  #head = 0;
  #startDrain = () => this.#drain();
  #writing = false;
  #closed = false;
  #nick = "";
  #key = "";
  #room: RelayRoom | undefined;
  #roomName = "";
  #pendingRoom = "";

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async run(): Promise<void> {
    const reader = new FrameReader({ maxFrame: 1024 * 1024 });
    const buf = new Uint8Array(READ_BUFFER_BYTES);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        for (const body of reader.push(buf.subarray(0, n))) {
          const pending = this.#handle(JSON.parse(decoder.decode(body)));
          if (pending) await pending;
        }
        if (reader.error) throw reader.error;
      }
    } catch (err) {
      if (!(err instanceof FrameError) && !(err instanceof SyntaxError) && !(err instanceof Deno.errors.BadResource)) {
        if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
      }
    } finally {
      this.#leave();
      this.#close();
    }
  }

  send(frame: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(frame);
    if (!this.#writing) {
      this.#writing = true;
      // Start writing at the end of this turn, so everything queued in the turn goes out in one write.
      queueMicrotask(this.#startDrain);
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#head < this.#queue.length && !this.#closed) {
        const queue = this.#queue;
        let i = this.#head;
        let bytes = 0;
        let end = i;
        while (end < queue.length && (end === i || bytes + queue[end].length <= WRITE_CHUNK_BYTES)) {
          bytes += queue[end++].length;
        }
        let chunk: Uint8Array;
        let copy: Uint8Array<ArrayBuffer> | undefined;
        if (end === i + 1) {
          chunk = queue[i++];
        } else {
          copy = takeChunk(bytes);
          let n = 0;
          for (; i < end; i++) {
            copy.set(queue[i], n);
            n += queue[i].length;
          }
          chunk = copy.subarray(0, n);
        }
        if (i === queue.length) {
          this.#queue = [];
          this.#head = 0;
        } else {
          this.#head = i;
        }
        let at = 0;
        while (at < chunk.length) at += await this.#conn.write(chunk.subarray(at));
        if (copy) giveChunk(copy);
      }
    } catch {
      this.#close();
    } finally {
      this.#writing = false;
    }
  }

  async #hello(clientNonce: string): Promise<void> {
    const serverNonce = crypto.getRandomValues(new Uint8Array(32));
    const input = serverInput({ clientNonce: Uint8Array.fromBase64(clientNonce), serverNonce });
    this.send(encodeMessage({
      type: "server",
      server: "relay",
      server_version: "0",
      version: 2,
      key: serverKey.publicKey.toBase64(),
      nonce: serverNonce.toBase64(),
      signature: (await signEd25519(serverKey.privateKey, input)).toBase64(),
    }));
  }

  #handle(msg: Record<string, unknown>): void | Promise<void> {
    switch (msg.type) {
      case "hello":
        return this.#hello(String(msg.nonce));
      case "login":
        this.#nick = String(msg.nick);
        this.#key = String(msg.key);
        this.send(encodeMessage({
          type: "welcome",
          nick: this.#nick,
          registered: true,
          direct_seq: 0,
          limits: {
            max_frame: 1024 * 1024,
            max_body: 16384,
            history: 0,
            history_page: 500,
            rate: 0,
            burst: 1,
            send_queue: 0,
            idle_timeout_ms: 0,
            max_rooms: 1000,
          },
        }));
        return;
      case "join": {
        const name = String(msg.room);
        this.#pendingRoom = name;
        const room = rooms.get(name);
        const nonce = crypto.getRandomValues(new Uint8Array(32)).toBase64();
        this.send(encodeMessage(
          room
            ? {
              type: "challenge",
              room: name,
              nonce,
              salt: room.salt,
              iterations: room.iterations,
              access_pub: room.accessPub,
              epoch: 0,
            }
            : { type: "challenge", room: name, nonce },
        ));
        return;
      }
      case "prove": {
        const name = this.#pendingRoom;
        let room = rooms.get(name);
        if (!room) {
          room = {
            salt: String(msg.salt),
            iterations: Number(msg.iterations),
            accessPub: String(msg.access_pub),
            members: new Set(),
          };
          rooms.set(name, room);
        }
        this.#leave();
        const presence = encodeMessage({
          type: "presence",
          event: "join",
          room: name,
          nick: this.#nick,
          key: this.#key,
        });
        for (const m of room.members) m.send(presence);
        room.members.add(this);
        this.#room = room;
        this.#roomName = name;
        const members = [...room.members].map((m) => ({ nick: m.#nick, key: m.#key }));
        this.send(encodeMessage({ type: "joined", room: name, epoch: 0, members, history: [], latest_seq: lastSeq }));
        return;
      }
      case "send": {
        const envelope = msg.envelope as { id: string };
        const seq = ++lastSeq;
        this.send(encodeFrame(`{"type":"ack","id":"${envelope.id}","seq":${seq}}`));
        if (!this.#room) return;
        const frame = encodeFrame(
          `{"type":"message","seq":${seq},"sent_at":${Date.now()},"envelope":${JSON.stringify(envelope)}}`,
        );
        for (const m of this.#room.members) if (m !== this) m.send(frame);
        return;
      }
      case "part":
        this.#leave();
        this.send(encodeMessage({ type: "parted", room: String(msg.room) }));
        return;
      case "ping":
        this.send(encodeMessage({ type: "pong" }));
        return;
      case "bye":
        this.send(encodeMessage({ type: "bye", reason: "quit" }));
        this.#leave();
        queueMicrotask(() => setTimeout(() => this.#close(), 100));
        return;
    }
  }

  #leave(): void {
    const room = this.#room;
    if (!room) return;
    this.#room = undefined;
    room.members.delete(this);
    const presence = encodeMessage({
      type: "presence",
      event: "leave",
      room: this.#roomName,
      nick: this.#nick,
      key: this.#key,
    });
    for (const m of room.members) m.send(presence);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#head = 0;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

function main(): void {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "0" }, host: { type: "string", default: "127.0.0.1" } },
  });
  const listener = Deno.listen({ hostname: values.host, port: Number(values.port) });
  const addr = listener.addr as Deno.NetAddr;
  console.log(`aeschat relay listening on ${addr.hostname}:${addr.port}`);
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  (async () => {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      (conn as Deno.TcpConn).setNoDelay(true);
      new RelayConnection(conn).run().catch((err) => console.error(`relay: ${err}`));
    }
  })();
}

if (import.meta.main) main();
