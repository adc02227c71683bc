/**
 * The server's outer loop: opens the store, checks the TLS files, listens, accepts connections within
 * --max-connections, sweeps idle ones, and shuts down cleanly.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { MAX_BODY_BYTES } from "../envelope.ts";
import { encodeMessage } from "../frame.ts";
import { HISTORY_PAGE } from "../protocol.ts";
import type { ServerConfig } from "./config.ts";
import { Connection } from "./connection.ts";
import { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { Store } from "./store.ts";

/** How long shutdown waits for connections to flush their last frames. */
const SHUTDOWN_GRACE_MS = 3000;

/** Raised when the server cannot start serving: `kind` picks the exit code. */
export class StartError extends Error {
  /** "listen" (address in use, no permission) or "tls" (unreadable or mismatched certificate and key). */
  readonly kind: "listen" | "tls";
  /**
   * @param kind what failed
   * @param message one line for the user
   */
  constructor(kind: "listen" | "tls", message: string) {
    super(message);
    this.name = "StartError";
    this.kind = kind;
  }
}

/** A running server. */
export interface RunningServer {
  /** The address actually bound (the real port when --port 0). */
  addr: Deno.NetAddr;
  /** Stops accepting, says bye to everyone, flushes, closes the database. */
  shutdown(): Promise<void>;
}

function readTls(config: ServerConfig): { cert: string; key: string } {
  let cert: string;
  let key: string;
  try {
    cert = Deno.readTextFileSync(config.tlsCert!);
    key = Deno.readTextFileSync(config.tlsKey!);
  } catch (err) {
    throw new StartError("tls", `cannot read TLS file: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new StartError("tls", `cannot parse TLS certificate or key (PEM expected): ${(err as Error).message}`);
  }
  if (!matches) {
    throw new StartError("tls", `TLS key ${config.tlsKey} does not match certificate ${config.tlsCert}`);
  }
  return { cert, key };
}

function remoteOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr as Deno.NetAddr;
  return addr.hostname.includes(":") ? `[${addr.hostname}]:${addr.port}` : `${addr.hostname}:${addr.port}`;
}

/**
 * Starts serving. Resolves once listening; the accept loop runs in the background.
 *
 * @example
 * ```ts
 * const server = await serve(parseServerFlags(["--port", "0"]), { log: new Logger() });
 * console.log(server.addr.port);
 * await server.shutdown();
 * ```
 * @param config the parsed flags
 * @param context.log the event log
 * @param context.version the server version, for the welcome
 * @returns the running server
 * @throws {StoreError} when the database cannot be opened
 * @throws {StartError} when TLS files are bad or the address cannot be bound
 */
export function serve(config: ServerConfig, context: { log: Logger; version: string }): RunningServer {
  const { log } = context;
  const tls = config.tlsCert !== undefined ? readTls(config) : undefined;
  const store = Store.open(config.db, { synchronous: config.synchronous });
  let listener: Deno.Listener;
  try {
    listener = tls
      ? Deno.listenTls({ hostname: config.host, port: config.port, cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname: config.host, port: config.port });
  } catch (err) {
    store.close();
    const why = err instanceof Deno.errors.AddrInUse ? "address already in use" : (err as Error).message.split("\n")[0];
    throw new StartError("listen", `cannot listen on ${config.host}:${config.port}: ${why}`);
  }
  const hub = new Hub(store, {
    version: context.version,
    log,
    limits: {
      max_frame: config.maxFrame,
      max_body: MAX_BODY_BYTES,
      history: config.history,
      history_page: HISTORY_PAGE,
      rate: config.rate,
      burst: config.burst,
      send_queue: config.sendQueue,
      idle_timeout_ms: Math.round(config.idleTimeout * 1000),
    },
  });
  const connectionOptions = {
    maxFrame: config.maxFrame,
    sendQueue: config.sendQueue,
    handshakeTimeoutMs: config.handshakeTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    rate: config.rate,
    burst: config.burst,
    log,
  };
  const connections = new Set<Connection>();
  const running = new Set<Promise<void>>();
  let stopping = false;

  const sweep = setInterval(() => {
    const now = performance.now();
    for (const c of connections) c.checkIdle(now);
  }, Math.min(1000, Math.max(20, connectionOptions.idleTimeoutMs / 4)));

  const accepting = (async () => {
    while (!stopping) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (stopping || err instanceof Deno.errors.BadResource) break;
        // For example "Too many open files": keep serving the clients we have, try again shortly.
        log.error("accept_failed", { reason: (err as Error).message.split("\n")[0] });
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      const remote = remoteOf(conn);
      if (stopping || connections.size >= config.maxConnections) {
        log.warn("limit", { remote, limit: "max_connections" });
        refuse(conn, stopping);
        continue;
      }
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      const connection = new Connection(conn, { hub, remote, options: connectionOptions });
      connections.add(connection);
      const done = connection.run().catch((err) => {
        log.error("connection_failed", { remote, reason: (err as Error).message.split("\n")[0] });
      }).finally(() => {
        connections.delete(connection);
        running.delete(done);
      });
      running.add(done);
    }
  })();

  let stopped: Promise<void> | undefined;
  return {
    addr: listener.addr as Deno.NetAddr,
    shutdown() {
      stopped ??= (async () => {
        stopping = true;
        log.info("shutdown", { connections: connections.size });
        clearInterval(sweep);
        try {
          listener.close();
        } catch {
          // already closed
        }
        await accepting;
        hub.shutdown();
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.allSettled([...running]),
          new Promise((resolve) => timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)),
        ]);
        clearTimeout(timer);
        store.close();
      })();
      return stopped;
    },
  };
}

function refuse(conn: Deno.Conn, stopping: boolean): void {
  const frame = stopping
    ? encodeMessage({ type: "bye", reason: "shutting_down", message: "the server is shutting down" })
    : encodeMessage({ type: "error", code: "server_full", message: "the server is full; try again later" });
  // Best effort: one small frame fits in the socket buffer; never wait on a refused client.
  conn.write(frame).catch(() => {}).finally(() => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  });
}
