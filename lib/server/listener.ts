/**
 * The server's outer loop: checks the TLS files, listens, then opens the store (so that a server that cannot listen
 * leaves no database behind), admits connections within the connection limits, sweeps idle ones, and shuts down
 * cleanly.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { MAX_BODY_BYTES } from "../envelope.ts";
import { encodeMessage } from "../frame.ts";
import { HISTORY_PAGE, type ServerLimits } from "../protocol.ts";
import { ExemptAddresses, hostOf, limitKeyOf } from "./addresses.ts";
import { Backpressure } from "./backpressure.ts";
import { parseRetention, type ServerConfig } from "./config.ts";
import { Connection, type ConnectionOptions, type Socket } from "./connection.ts";
import { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { Store } from "./store.ts";
import { startTls } from "./tls.ts";

/** How long shutdown waits for connections to flush their last frames. */
const SHUTDOWN_GRACE_MS = 3000;
/** How often messages older than --retention are deleted. */
const RETENTION_EVERY_MS = 60_000;

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
 * Counts what the connection limits are about: every accepted socket (including one still in its TLS handshake), per
 * address key (`limitKeyOf`: an IPv6 /64 is one; an exempt address's sockets are not counted under it), and those
 * still in a TLS handshake (which have proved nothing yet).
 */
class Slots {
  total = 0;
  handshaking = 0;
  #perAddress = new Map<string, number>();

  /** Counted connections under this address key. */
  from(key: string): number {
    return this.#perAddress.get(key) ?? 0;
  }

  /** Counts a connection, under its address key unless it is exempt (undefined). */
  take(key: string | undefined): void {
    this.total++;
    if (key !== undefined) this.#perAddress.set(key, this.from(key) + 1);
  }

  /** Gives back what {@link take} counted, with the same key. */
  give(key: string | undefined): void {
    this.total--;
    if (key === undefined) return;
    const n = this.from(key) - 1;
    if (n > 0) this.#perAddress.set(key, n);
    else this.#perAddress.delete(key);
  }
}

/** Most refusals logged one by one per second; a stranger opening thousands of connections gets a count instead. */
const REFUSALS_LOGGED_PER_S = 10;

/** Logs refused connections, at most REFUSALS_LOGGED_PER_S a second, then how many were left out. */
class RefusalLog {
  #log: Logger;
  #second = 0;
  #logged = 0;
  #unlogged = new Map<string, number>();

  constructor(log: Logger) {
    this.#log = log;
  }

  log(remote: string, limit: string): void {
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.#second) {
      for (const [why, n] of this.#unlogged) this.#log.warn("limit", { limit: why, unlogged: n });
      this.#unlogged.clear();
      this.#second = second;
      this.#logged = 0;
    }
    if (this.#logged++ < REFUSALS_LOGGED_PER_S) this.#log.warn("limit", { remote, limit });
    else this.#unlogged.set(limit, (this.#unlogged.get(limit) ?? 0) + 1);
  }
}

function limitsOf(config: ServerConfig): ServerLimits {
  return {
    max_frame: config.maxFrame,
    max_body: MAX_BODY_BYTES,
    history: config.history,
    history_page: HISTORY_PAGE,
    rate: config.rate,
    burst: config.burst,
    send_queue: config.sendQueue,
    idle_timeout_ms: Math.round(config.idleTimeout * 1000),
    max_rooms: config.maxRoomsPerConnection,
  };
}

/**
 * Starts serving. Returns once listening and the database is open; connections are handled in the background.
 *
 * @example
 * ```ts
 * const server = serve(parseServerFlags(["--port", "0"]), { log: new Logger(), version: "0.1.0" });
 * console.log(server.addr.port);
 * await server.shutdown();
 * ```
 * @param config the parsed flags
 * @param context.log the event log
 * @param context.version the server version, for the welcome
 * @returns the running server
 * @throws {StartError} when TLS files are bad or the address cannot be bound (no database is opened then)
 * @throws {StoreError} when the database cannot be opened
 */
export function serve(config: ServerConfig, context: { log: Logger; version: string }): RunningServer {
  const { log } = context;
  const tlsFiles = config.tlsCert !== undefined ? readTls(config) : undefined;
  const secureContext = tlsFiles ? createSecureContext(tlsFiles) : undefined;
  const exempt = new ExemptAddresses(config.exemptAddresses);
  const slots = new Slots();
  const refusals = new RefusalLog(log);
  const connections = new Set<Connection>();
  const running = new Set<Promise<void>>();
  const handshakes = new Set<Deno.Conn>();
  let hub: Hub | undefined = undefined;
  let stopping = false;
  const backpressure = new Backpressure({
    sendQueue: config.sendQueue,
    graceMs: config.sendGrace * 1000,
    maxQueued: config.maxQueued,
    minReadRate: config.minReadRate,
    log,
  });
  const connectionOptions: ConnectionOptions = {
    maxFrame: config.maxFrame,
    backpressure,
    handshakeTimeoutMs: config.handshakeTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    rate: config.rate,
    burst: config.burst,
    log,
  };

  /** The key a connection from `remote` counts under for --max-connections-per-address; undefined when exempt. */
  const slotKey = (remote: string): string | undefined => {
    const host = hostOf(remote);
    return exempt.has(host) ? undefined : limitKeyOf(host);
  };

  /** Why a new connection under this slot key is refused, or undefined when it is admitted. */
  const refusal = (key: string | undefined): string | undefined => {
    if (stopping || hub === undefined) return "shutting_down";
    if (slots.total >= config.maxConnections) return "max_connections";
    if (key !== undefined && slots.from(key) >= config.maxConnectionsPerAddress) return "max_connections_per_address";
    if (hub.unproven + slots.handshaking >= Math.ceil(config.maxConnections / 2)) return "unproven_connections";
    return undefined;
  };

  const run = (socket: Socket, remote: string, acceptedAt: number) => {
    const key = slotKey(remote);
    const connection = new Connection(socket, { hub: hub!, remote, options: connectionOptions, acceptedAt });
    connections.add(connection);
    const done = connection.run().catch((err) => {
      log.error("connection_failed", { remote, reason: (err as Error).message.split("\n")[0] });
    }).finally(() => {
      connections.delete(connection);
      running.delete(done);
      slots.give(key);
    });
    running.add(done);
  };

  const secure = (conn: Deno.Conn, remote: string) => {
    const key = slotKey(remote);
    slots.handshaking++;
    handshakes.add(conn);
    const acceptedAt = performance.now();
    startTls(conn, { secureContext: secureContext!, timeoutMs: connectionOptions.handshakeTimeoutMs }).then(
      (socket) => {
        slots.handshaking--;
        handshakes.delete(conn);
        if (socket === undefined || stopping) {
          socket?.close();
          log.info("tls_failed", { remote });
          slots.give(key);
          return;
        }
        run(socket, remote, acceptedAt);
      },
    );
  };

  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname: config.host, port: config.port });
  } catch (err) {
    const why = err instanceof Deno.errors.AddrInUse ? "address already in use" : (err as Error).message.split("\n")[0];
    throw new StartError("listen", `cannot listen on ${config.host}:${config.port}: ${why}`);
  }
  const closeListener = () => {
    try {
      listener.close();
    } catch {
      // already closed
    }
  };
  let store: Store;
  const retention = parseRetention(config.retention);
  try {
    store = Store.open(config.db, { synchronous: config.synchronous, retention });
  } catch (err) {
    closeListener();
    throw err;
  }
  for (const warning of store.warnings) log.warn("database_mode", { reason: warning });
  for (const room of store.rooms()) {
    if (room.shadowedBy === undefined) continue;
    log.warn("room_shadowed", {
      room: room.name,
      by: room.shadowedBy,
      reason: "from a v1 database, its name folds like an older room's, so no client can reach it " +
        "(admin rooms lists it; admin delete-room removes it)",
    });
  }
  hub = new Hub(store, {
    version: context.version,
    log,
    limits: limitsOf(config),
    backpressure,
    rooms: {
      maxRooms: config.maxRooms,
      createPerHour: config.roomCreateRate,
      createBurst: config.roomCreateBurst,
      quotaBytes: config.roomQuota,
      exempt: (host) => exempt.has(host),
    },
    direct: { capacity: config.directInbox, retention },
    registry: {
      maxNicksPerKey: config.maxNicksPerKey,
      registrationsPerHour: config.registrationsPerHour,
      nickExpiryMs: config.nickExpiry * 86_400_000,
      closed: config.registration === "closed",
      exempt: (host) => exempt.has(host),
    },
  });
  // The retention: what is already stored now, then every minute (a count is also kept as messages come).
  const prune = () => {
    try {
      const now = Date.now();
      const deleted = store.prune(now);
      const direct = hub!.inboxes.prune(now);
      if (deleted > 0 || direct > 0) log.info("retention", { deleted, direct, keep: config.retention });
    } catch (err) {
      log.error("retention_failed", { reason: (err as Error).message });
    }
  };
  prune();
  const pruning = config.retention === "all" ? undefined : setInterval(prune, RETENTION_EVERY_MS);

  const sweepEveryMs = Math.max(20, Math.min(1000, connectionOptions.idleTimeoutMs / 4, config.sendGrace * 250));
  let lastSweep = performance.now();
  const sweep = setInterval(() => {
    const now = performance.now();
    // A sweep that comes late means this process was busy (a long batch, a stalled disk): the clients' frames may be
    // waiting unread in the kernel. Let the connections read them before anyone is judged idle.
    const late = now - lastSweep > 2 * sweepEveryMs + 100;
    lastSweep = now;
    if (late) return;
    for (const c of connections) c.checkIdle(now);
    backpressure.sweep();
  }, sweepEveryMs);

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
      const key = slotKey(remote);
      const why = refusal(key);
      if (why !== undefined) {
        if (why !== "shutting_down") refusals.log(remote, why);
        // Over TLS no error frame could be read before a handshake: close at once, without spending one on it.
        if (secureContext) conn.close();
        else refuse(conn, why);
        continue;
      }
      (conn as Deno.TcpConn).setNoDelay(true);
      slots.take(key);
      if (secureContext) secure(conn, remote);
      else run(conn, remote, performance.now());
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
        clearInterval(pruning);
        closeListener();
        for (const conn of handshakes) {
          try {
            conn.close();
          } catch {
            // closed by its handshake timeout meanwhile
          }
        }
        await accepting;
        hub!.shutdown();
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

const REFUSALS: Record<string, string> = {
  max_connections: "the server is full; try again later",
  max_connections_per_address: "too many connections from your address; try again later",
  unproven_connections: "too many connections that have not joined a room yet; try again later",
};

function refuse(conn: Deno.Conn, why: string): void {
  const frame = why === "shutting_down"
    ? encodeMessage({ type: "bye", reason: "shutting_down", message: "the server is shutting down" })
    : encodeMessage({ type: "error", code: "server_full", message: REFUSALS[why] });
  // Best effort: one small frame fits in the socket buffer; never wait on a refused client.
  conn.write(frame).catch(() => {}).finally(() => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  });
}
