/**
 * The server side of TLS, with `node:tls` over a plain TCP connection accepted by `Deno.listen`, seen by the
 * connection as a {@link Socket}. Deno 2.9.6's `TlsConn.close()` does not release a socket whose handshake never
 * finished, so a silent stranger could keep its file descriptor as long as it liked; and `node:net`'s server stops
 * accepting for good after one "too many open files". A plain `Deno.Conn` does neither (ARCHITECTURE.md has the
 * reproductions), so the TCP side stays Deno's and is closed at the handshake timeout, which releases it.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import tls from "node:tls";
import type { Socket } from "./connection.ts";

/** Bytes read from the TCP connection at a time, for the TLS layer. */
const TLS_READ_BYTES = 16 * 1024;
/** The content type of a TLS handshake record: every TLS client's first byte. */
const TLS_HANDSHAKE_RECORD = 0x16;
/**
 * A fatal `unexpected_message` alert record (TLS 1.2 framing), sent to a client whose first byte is not a TLS
 * handshake, as rustls did: a plain aeschat client reads it where a frame header should be and says "the server speaks
 * TLS: add --tls" instead of only seeing the connection closed.
 */
const UNEXPECTED_MESSAGE_ALERT = new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a]);

/** A node Duplex stream over a Deno TCP connection; destroying it closes the connection. */
function duplexOf(conn: Deno.Conn): Duplex {
  const buffer = new Uint8Array(TLS_READ_BYTES);
  let reading = false;
  let first = true;
  return new Duplex({
    read() {
      if (reading) return;
      reading = true;
      conn.read(buffer).then(async (n) => {
        if (first && n !== null && n > 0 && buffer[0] !== TLS_HANDSHAKE_RECORD) {
          await conn.write(UNEXPECTED_MESSAGE_ALERT).catch(() => {});
          n = null;
        }
        first = false;
        reading = false;
        this.push(n === null ? null : Buffer.from(buffer.subarray(0, n)));
      }, () => {
        reading = false;
        this.push(null);
      });
    },
    write(chunk: Uint8Array, _encoding, done) {
      (async () => {
        let at = 0;
        while (at < chunk.length) at += await conn.write(chunk.subarray(at));
      })().then(() => done(), (err) => done(err));
    },
    destroy(err, done) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      done(err);
    },
  });
}

/**
 * Runs the server side of the TLS handshake on an accepted TCP connection. When the handshake has not completed
 * within `timeoutMs`, or fails, the TCP connection is closed (its file descriptor released) and the promise resolves
 * to undefined.
 *
 * @example
 * ```ts
 * const socket = await startTls(conn, { secureContext, timeoutMs: 10_000 });
 * if (socket) new Connection(socket, context);
 * ```
 * @param conn an accepted TCP connection
 * @param options.secureContext the certificate and key
 * @param options.timeoutMs how long the client has to complete the handshake
 * @returns the encrypted socket, or undefined
 */
export function startTls(
  conn: Deno.Conn,
  options: { secureContext: tls.SecureContext; timeoutMs: number },
): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const secure = new tls.TLSSocket(duplexOf(conn), { isServer: true, secureContext: options.secureContext });
    let settled = false;
    const settle = (socket: Socket | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (socket === undefined) closeBoth(secure, conn);
      resolve(socket);
    };
    const timer = setTimeout(() => settle(undefined), options.timeoutMs);
    secure.on("error", () => settle(undefined));
    secure.once("close", () => settle(undefined));
    secure.once("secure", () => settle(new NodeTlsSocket(secure, conn)));
  });
}

function closeBoth(secure: tls.TLSSocket, conn: Deno.Conn): void {
  secure.destroy();
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** A node TLSSocket seen through the {@link Socket} interface the connection reads and writes. */
class NodeTlsSocket implements Socket {
  #secure: tls.TLSSocket;
  #conn: Deno.Conn;
  #rest: Buffer | undefined;
  #ended = false;

  constructor(secure: tls.TLSSocket, conn: Deno.Conn) {
    this.#secure = secure;
    this.#conn = conn;
    const end = () => this.#ended = true;
    secure.on("end", end);
    secure.on("close", end);
    secure.on("error", end);
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (true) {
      const chunk = this.#rest ?? this.#secure.read() as Buffer | null;
      this.#rest = undefined;
      if (chunk !== null) {
        const n = Math.min(chunk.length, into.length);
        into.set(chunk.subarray(0, n));
        if (n < chunk.length) this.#rest = chunk.subarray(n);
        return n;
      }
      if (this.#ended) return null;
      await new Promise<void>((resolve) => {
        const events = ["readable", "end", "close", "error"];
        const wake = () => {
          for (const event of events) this.#secure.off(event, wake);
          resolve();
        };
        for (const event of events) this.#secure.on(event, wake);
      });
    }
  }

  write(bytes: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#ended) return reject(new Deno.errors.BrokenPipe("the TLS connection is closed"));
      // The callback comes once the bytes are encrypted and handed on, so the caller may reuse the buffer then.
      this.#secure.write(bytes, (err?: Error | null) => err ? reject(err) : resolve(bytes.length));
    });
  }

  close(): void {
    this.#ended = true;
    closeBoth(this.#secure, this.#conn);
  }
}
