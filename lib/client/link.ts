/**
 * The client's transport, its twin of the server's connection.ts: dialing the server (TCP or TLS), writing frames in
 * order, and reading frame bodies. The session is handed a {@link Dial} function, so tests (and later a browser) can
 * give it another transport; nothing above this module touches a socket.
 *
 * @module
 */

import { FrameError, FrameReader } from "../frame.ts";

/** Largest frame the client reads (servers may be configured above the 64 KiB default; history replies are large). */
export const CLIENT_MAX_FRAME = 16 * 1024 * 1024;
/** Bytes read from the socket at a time. */
const READ_BUFFER_BYTES = 64 * 1024;

/** One connection to the server, as the session sees it. */
export interface Link {
  /** Queues one complete frame; frames are written in the order queued. Ignored once closed. */
  write(frame: Uint8Array): void;
  /** Resolves when every frame queued so far has been written (or the link is closed). */
  flushed(): Promise<void>;
  /** Closes the connection; `lost` is then called with kind "closed". */
  close(): void;
  /** Whether the connection is closed. */
  readonly closed: boolean;
}

/** What a link reports to the session. */
export interface LinkEvents {
  /** One frame body from the server (valid only during the call). */
  body(body: Uint8Array): void;
  /** The connection ended; called once, whatever the cause. */
  lost(error: LinkError): void;
}

/** Opens a link; rejects with a {@link LinkError} when the server cannot be reached. */
export type Dial = (events: LinkEvents) => Promise<Link>;

/**
 * Why a link could not be opened or ended: "unreachable" (connect failed), "tls" (a TLS problem the user can fix,
 * named in the message), "lost" (the connection ended or broke), "protocol" (the server sent bytes that are not
 * frames), "closed" (closed by this side).
 */
export type LinkErrorKind = "unreachable" | "tls" | "lost" | "protocol" | "closed";

/** A transport failure, with one line for the user that says what to do where something can be done. */
export class LinkError extends Error {
  /** The failure class. */
  readonly kind: LinkErrorKind;
  /**
   * @param kind the failure class
   * @param message one line for the user
   */
  constructor(kind: LinkErrorKind, message: string) {
    super(message);
    this.name = "LinkError";
    this.kind = kind;
  }
}

/** Where the server is and how to talk to it. */
export interface ServerAddress {
  /** Host name or address. */
  host: string;
  /** Port. */
  port: number;
  /** Connect with TLS. */
  tls?: boolean;
  /** PEM certificates to trust besides the system store. */
  caCerts?: string[];
}

/**
 * The user's line for a failed TLS handshake: what is wrong and what to do, instead of the TLS library's words.
 *
 * @example
 * ```ts
 * tlsProblem("invalid peer certificate: UnknownIssuer", "127.0.0.1"); // "certificate not trusted: pass --ca FILE"
 * ```
 * @param message the runtime's error message
 * @param host the host name that was dialed
 * @returns the line, or undefined when the message is not about TLS
 */
export function tlsProblem(message: string, host: string): string | undefined {
  if (/InvalidContentType|corrupt message|WrongVersion|record overflow/i.test(message)) {
    return "the server does not speak TLS";
  }
  if (/UnknownIssuer|BadSignature|UnsupportedCertVersion|self.signed/i.test(message)) {
    return "certificate not trusted: pass --ca FILE";
  }
  if (/not valid for name|NotValidForName/i.test(message)) {
    const names = [...message.matchAll(/(?:DnsName|IpAddress)\(\s*"?([^")]+)"?\s*\)/g)].map((m) => m[1]);
    return names.length > 0 ? `certificate is for ${names.join(", ")}, not ${host}` : `certificate is not for ${host}`;
  }
  if (/Expired|NotValidYet/i.test(message)) return `certificate not accepted: ${firstLine(message)}`;
  if (/invalid peer certificate/i.test(message)) return `certificate not accepted: ${firstLine(message)}`;
  return undefined;
}

function firstLine(message: string): string {
  return message.split("\n")[0];
}

/**
 * Whether the first bytes from a server are a TLS record (an alert or a handshake, version 3.x) rather than a frame:
 * a plain client talking to a TLS server reads exactly that, and a frame never starts so (its length would be over
 * 350 MB).
 *
 * @example
 * ```ts
 * looksLikeTls(new Uint8Array([0x15, 0x03, 0x03])); // true
 * ```
 * @param bytes the first bytes read
 * @returns true for a TLS record header
 */
export function looksLikeTls(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && (bytes[0] === 0x15 || bytes[0] === 0x16) && bytes[1] === 0x03;
}

/** One socket: ordered writes that cope with partial writes, and a read loop feeding a FrameReader. */
class SocketLink implements Link {
  #conn: Deno.Conn;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #events: LinkEvents;
  #plain: boolean;
  #address: string;

  constructor(conn: Deno.Conn, events: LinkEvents, options: { plain: boolean; address: string }) {
    this.#conn = conn;
    this.#events = events;
    this.#plain = options.plain;
    this.#address = options.address;
    this.#read().then((error) => {
      this.close();
      events.lost(error);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(frame: Uint8Array): void {
    if (this.#closed) return;
    this.#writing = this.#writing.then(async () => {
      let at = 0;
      while (at < frame.length && !this.#closed) at += await this.#conn.write(frame.subarray(at));
    }).catch(() => this.close());
  }

  async flushed(): Promise<void> {
    await this.#writing;
  }

  async #read(): Promise<LinkError> {
    const reader = new FrameReader({ maxFrame: CLIENT_MAX_FRAME });
    const buf = new Uint8Array(READ_BUFFER_BYTES);
    let first = true;
    try {
      while (true) {
        const n = await this.#conn.read(buf);
        if (n === null) return new LinkError("lost", "the server closed the connection");
        const chunk = buf.subarray(0, n);
        if (first && this.#plain && looksLikeTls(chunk)) {
          return new LinkError("tls", `cannot connect to ${this.#address}: the server speaks TLS: add --tls`);
        }
        first = false;
        for (const body of reader.push(chunk)) this.#events.body(body);
        if (reader.error) {
          return new LinkError("protocol", `the server sent something that is not a frame: ${reader.error.message}`);
        }
      }
    } catch (err) {
      if (err instanceof FrameError) {
        return new LinkError("protocol", `the server sent something that is not a frame: ${err.message}`);
      }
      if (this.#closed) return new LinkError("closed", "closed");
      return new LinkError("lost", `connection error: ${firstLine((err as Error).message)}`);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * The dial function for a real server over TCP, or TLS with `tls` (trusting `caCerts` besides the system store).
 * A TLS handshake is completed before the link is handed over, so certificate problems surface here, as one line
 * that says what to do.
 *
 * @example
 * ```ts
 * const session = await Session.connect(dialServer({ host: "127.0.0.1", port: 5000 }), { nick: "alice", onEvent });
 * ```
 * @param address where the server is
 * @returns the dial function
 */
export function dialServer(address: ServerAddress): Dial {
  const { host, port } = address;
  return async (events) => {
    let conn: Deno.Conn;
    try {
      if (address.tls) {
        const tls = await Deno.connectTls({ hostname: host, port, caCerts: address.caCerts });
        try {
          await tls.handshake();
        } catch (err) {
          tls.close();
          throw err;
        }
        conn = tls;
      } else {
        conn = await Deno.connect({ hostname: host, port });
      }
    } catch (err) {
      const message = firstLine((err as Error).message);
      const tls = address.tls ? tlsProblem(message, host) : undefined;
      if (tls) throw new LinkError("tls", `cannot connect to ${host}:${port}: ${tls}`);
      throw new LinkError("unreachable", `cannot connect to ${host}:${port}: ${message}`);
    }
    return new SocketLink(conn, events, { plain: !address.tls, address: `${host}:${port}` });
  };
}
