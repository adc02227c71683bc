/**
 * aeschat server: relays and stores end-to-end encrypted messages it cannot read. This entry point parses flags,
 * starts the server (or runs an `admin` command on its database), and turns every failure into one line on stderr
 * and a documented exit code.
 *
 * @module
 */

import denoConfig from "./deno.json" with { type: "json" };
import { NotFoundError, runAdmin } from "./lib/server/admin.ts";
import { parseServerFlags, serverHelp, UsageError } from "./lib/server/config.ts";
import { type RunningServer, serve, StartError } from "./lib/server/listener.ts";
import { Logger } from "./lib/server/log.ts";
import { StoreError } from "./lib/server/store.ts";
import { versionLine } from "./lib/version.ts";

/** Exit codes, as documented in --help and README.md. */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  listen: 3,
  dbOpen: 4,
  dbCorrupt: 5,
  tls: 6,
  notFound: 7,
} as const;

const encoder = new TextEncoder();

function fail(code: number, message: string): never {
  console.error(`aeschat server: ${message}`);
  Deno.exit(code);
}

function onSignals(signals: Deno.Signal[], handler: () => void): void {
  for (const signal of signals) {
    try {
      Deno.addSignalListener(signal, handler);
    } catch {
      // This OS does not have the signal (SIGTERM on older Windows builds).
    }
  }
}

/** `admin COMMAND`: one line per result on stdout, one line on stderr for a failure. */
async function admin(args: string[]): Promise<void> {
  try {
    for (const line of await runAdmin(args)) console.log(line);
  } catch (err) {
    if (err instanceof UsageError) fail(EXIT.usage, `admin: ${err.message} (see admin --help)`);
    if (err instanceof NotFoundError) fail(EXIT.notFound, `admin: ${err.message}`);
    if (err instanceof StoreError) {
      fail(err.kind === "corrupt" || err.kind === "newer" ? EXIT.dbCorrupt : EXIT.dbOpen, `admin: ${err.message}`);
    }
    throw err;
  }
}

function main(args: string[]): void | Promise<void> {
  if (args[0] === "admin") return admin(args.slice(1));
  let config;
  try {
    config = parseServerFlags(args);
  } catch (err) {
    if (err instanceof UsageError) fail(EXIT.usage, `${err.message} (see --help)`);
    throw err;
  }
  if (config.help) {
    console.log(serverHelp(denoConfig.version));
    return;
  }
  if (config.version) {
    console.log(versionLine("server"));
    return;
  }
  const log = new Logger({
    level: config.logLevel,
    format: config.logFormat,
    sink: (line) => Deno.stderr.writeSync(encoder.encode(line + "\n")),
  });
  let server: RunningServer;
  try {
    server = serve(config, { log, version: denoConfig.version });
  } catch (err) {
    if (err instanceof StoreError) {
      fail(err.kind === "corrupt" || err.kind === "newer" ? EXIT.dbCorrupt : EXIT.dbOpen, err.message);
    }
    if (err instanceof StartError) fail(err.kind === "tls" ? EXIT.tls : EXIT.listen, err.message);
    throw err;
  }
  let stopping = false;
  // Before the listening line: whoever reads that line may send a signal at once.
  onSignals(["SIGINT", "SIGTERM"], () => {
    if (stopping) return;
    stopping = true;
    server.shutdown().then(() => Deno.exit(EXIT.ok));
  });
  const { hostname, port } = server.addr;
  console.log(`aeschat server listening on ${hostname}:${port} (db ${config.db})`);
  if (config.tlsCert) console.log(`aeschat server: TLS with certificate ${config.tlsCert}`);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (err) {
    fail(EXIT.internal, `internal error: ${err instanceof Error ? err.message : String(err)}`);
  }
}
