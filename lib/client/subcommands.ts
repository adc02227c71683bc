/**
 * The client's subcommands that work on the home alone: the identity (`identity`, `export`, `import`, `rotate`,
 * `passphrase`) and the pins (`trust-server`, `trust`, `forget-room`). Each writes its result for people on `out`,
 * problems on `err`, and returns the exit code. Questions go through `ask`, which is a terminal prompt when there is
 * a terminal and undefined when there is not.
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import { fingerprint, formatFingerprint } from "../identity.ts";
import { CLIENT_EXIT, type ClientConfig, type Subcommand } from "./config.ts";
import { exportIdentity, Home, HomeError, importIdentityFile } from "./home.ts";

/** Where a subcommand talks to the user. */
export interface SubcommandIo {
  /** The home's directory. */
  dir: string;
  /** Results, for people. */
  out(line: string): void;
  /** Problems. */
  err(line: string): void;
  /** Asks a question on the terminal (undefined when there is none, or the user gave no answer). */
  ask?(question: string, options: { secret: boolean }): Promise<string | undefined>;
  /** Opens the home, asking for the identity passphrase when it is protected. */
  open(): Promise<Home>;
  /** Reads the first line of stdin (for `identity passphrase` without a terminal). */
  stdinLine?(): Promise<string | undefined>;
}

/** A failure of a subcommand: one line, and the exit code. */
export class SubcommandError extends Error {
  /** The exit code. */
  readonly code: number;
  /**
   * @param message one line for the user
   * @param code the exit code (default 2)
   */
  constructor(message: string, code: number = CLIENT_EXIT.usage) {
    super(message);
    this.name = "SubcommandError";
    this.code = code;
  }
}

/**
 * Runs a subcommand that needs no connection.
 *
 * @example
 * ```ts
 * const code = await runSubcommand(config, { dir, out: console.log, err: console.error, open: () => Home.open(dir) });
 * ```
 * @param config the parsed command line (its command, and --host/--port for the pins)
 * @param io where to talk, and how to open the home
 * @returns the exit code
 * @throws {SubcommandError} for a refusal (one line and its exit code)
 * @throws {HomeError} when the home cannot be used
 */
export async function runSubcommand(config: ClientConfig, io: SubcommandIo): Promise<number> {
  const command = config.command as Exclude<Subcommand, { name: "chat" } | { name: "accept" }>;
  const address = `${config.host}:${config.port}`;
  switch (command.name) {
    case "identity":
      return await showIdentity(io);
    case "identity export":
      return exportTo(io, command.file);
    case "identity import":
      return await importFrom(io, command.file);
    case "identity rotate":
      return await rotate(io);
    case "identity passphrase":
      return await changePassphrase(io);
    case "trust-server":
      return await trustServer(io, command);
    case "trust":
      return await trustPeer(io, { address, nick: command.nick, fingerprint: command.fingerprint });
    case "forget-room":
      return await forgetRoom(io, { address, room: command.room });
  }
}

async function showIdentity(io: SubcommandIo): Promise<number> {
  let stored: { public_key: string; secrets: unknown };
  try {
    stored = JSON.parse(exportIdentity(io.dir));
  } catch (err) {
    if (!(err instanceof HomeError) || err.kind !== "missing") throw err;
    // First run: made without asking.
    const home = await io.open();
    stored = JSON.parse(exportIdentity(home.dir));
    io.out("made a new identity");
  }
  io.out(`fingerprint: ${formatFingerprint(await fingerprint(decodeBase64(stored.public_key)))}`);
  io.out(`home:        ${io.dir}`);
  io.out(`passphrase:  ${typeof stored.secrets === "string" ? "none" : "yes (the key is locked under it)"}`);
  return CLIENT_EXIT.ok;
}

function exportTo(io: SubcommandIo, file: string): number {
  const text = exportIdentity(io.dir);
  try {
    Deno.writeTextFileSync(file, text + "\n", { createNew: true, mode: 0o600 });
  } catch (err) {
    const why = err instanceof Deno.errors.AlreadyExists ? "it exists (choose a new file)" : firstLine(err);
    throw new SubcommandError(`cannot write ${file}: ${why}`);
  }
  const locked = typeof JSON.parse(text).secrets !== "string";
  io.out(`wrote your identity to ${file} (mode 600)`);
  io.out(
    locked
      ? "the key in it is locked under your identity passphrase"
      : "the key in it is NOT protected by a passphrase: move it over a channel you trust, and delete it afterwards",
  );
  io.out(`on the other device: deno task client identity import ${file}`);
  return CLIENT_EXIT.ok;
}

async function importFrom(io: SubcommandIo, file: string): Promise<number> {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (err) {
    throw new SubcommandError(`cannot read ${file}: ${firstLine(err)}`);
  }
  importIdentityFile(io.dir, text);
  const home = await io.open();
  io.out(`imported the identity ${formatFingerprint(await fingerprint(home.identity.publicKey))} into ${io.dir}`);
  io.out("pins, ids shown and kept room secrets stay with the first device: this one pins on first sight");
  return CLIENT_EXIT.ok;
}

async function rotate(io: SubcommandIo): Promise<number> {
  const home = await io.open();
  const { old, next } = await home.rotate();
  io.out(`old key: ${formatFingerprint(await fingerprint(old))}`);
  io.out(`new key: ${formatFingerprint(await fingerprint(next))}`);
  io.out("the old key signed the change: you present the statement at your next login, the server moves your nicks,");
  io.out("and peers who pinned the old key accept the new one without a warning (verification starts over)");
  io.out("other devices with the old key: export this identity again and import it there");
  return CLIENT_EXIT.ok;
}

async function changePassphrase(io: SubcommandIo): Promise<number> {
  const home = await io.open();
  let next: string | undefined;
  if (io.ask) {
    next = await io.ask("new identity passphrase (empty: none): ", { secret: true });
    if (next === undefined) throw new SubcommandError("cancelled: nothing changed");
    if (next !== "" && await io.ask("repeat it: ", { secret: true }) !== next) {
      throw new SubcommandError("the passphrases differ: nothing changed");
    }
  } else {
    next = await io.stdinLine?.();
    if (next === undefined) throw new SubcommandError("no passphrase on stdin: nothing changed");
  }
  await home.setPassphrase(next === "" ? undefined : next);
  io.out(next === "" ? "your identity key is no longer protected by a passphrase" : "passphrase set");
  return CLIENT_EXIT.ok;
}

/** The offered key whose fingerprint the user named, or (on a terminal) confirmed. */
async function confirmOffered(
  io: SubcommandIo,
  offer: { what: string; pinned: Uint8Array; offered: Uint8Array; given?: string; command: string },
): Promise<void> {
  const offered = await fingerprint(offer.offered);
  const pinned = formatFingerprint(await fingerprint(offer.pinned));
  if (offer.given !== undefined) {
    if (offer.given !== offered) {
      throw new SubcommandError(
        `${offer.what} now offers ${formatFingerprint(offered)}, not the key you named: nothing changed`,
      );
    }
    return;
  }
  if (!io.ask) {
    throw new SubcommandError(
      `${offer.what} offers ${formatFingerprint(offered)} (pinned: ${pinned}); if you checked it: ${offer.command} ` +
        offered,
    );
  }
  io.out(`pinned:  ${pinned}`);
  io.out(`offered: ${formatFingerprint(offered)}`);
  const answer = await io.ask(`trust the offered key of ${offer.what}? [y/N] `, { secret: false });
  if (!/^y(es)?$/i.test(answer?.trim() ?? "")) throw new SubcommandError("nothing changed");
}

async function trustServer(io: SubcommandIo, command: { address: string; fingerprint?: string }): Promise<number> {
  const home = await io.open();
  const pin = home.serverPin(command.address);
  if (!pin) throw new SubcommandError(`you have not connected to ${command.address} yet: nothing to trust`);
  if (!pin.offered) {
    throw new SubcommandError(
      `${command.address} has shown no other key than the pinned ${
        formatFingerprint(await fingerprint(pin.key))
      }: nothing to trust`,
    );
  }
  await confirmOffered(io, {
    what: `the server at ${command.address}`,
    pinned: pin.key,
    offered: pin.offered,
    given: command.fingerprint,
    command: `deno task client trust-server ${command.address}`,
  });
  const moved = home.trustServer(command.address, { key: pin.offered });
  if (!moved) throw new SubcommandError("the server offered yet another key meanwhile: nothing changed");
  io.out(`${command.address}: now trusting ${formatFingerprint(await fingerprint(moved.new))}`);
  io.out("every pin of the old key (rooms, peers) moved to the new one");
  return CLIENT_EXIT.ok;
}

/** The key pinned for the server of --host/--port. */
function serverOf(home: Home, address: string): Uint8Array {
  const pin = home.serverPin(address);
  if (!pin) throw new SubcommandError(`you have not connected to ${address} yet (use --host and --port)`);
  return pin.key;
}

async function trustPeer(
  io: SubcommandIo,
  command: { address: string; nick: string; fingerprint?: string },
): Promise<number> {
  const home = await io.open();
  const server = serverOf(home, command.address);
  const pin = home.peerPin(server, command.nick);
  if (!pin) throw new SubcommandError(`no key is pinned for ${command.nick} on ${command.address}`);
  if (!pin.offered) {
    throw new SubcommandError(
      `${pin.nick} has shown no other key than the pinned ${formatFingerprint(await fingerprint(pin.key))}`,
    );
  }
  await confirmOffered(io, {
    what: `${pin.nick} on ${command.address}`,
    pinned: pin.key,
    offered: pin.offered,
    given: command.fingerprint,
    command: `deno task client trust ${pin.nick} --host ${command.address.replace(/:(\d+)$/, " --port $1")}`,
  });
  home.trustPeer(server, { nick: pin.nick, key: pin.offered });
  io.out(`${pin.nick}: now trusting ${formatFingerprint(await fingerprint(pin.offered))} (not verified: /verify)`);
  return CLIENT_EXIT.ok;
}

async function forgetRoom(io: SubcommandIo, command: { address: string; room: string }): Promise<number> {
  const home = await io.open();
  const server = serverOf(home, command.address);
  if (!await home.forgetRoom(server, command.room)) {
    throw new SubcommandError(`nothing is pinned or kept for #${command.room} on ${command.address}`);
  }
  io.out(`forgot #${command.room} on ${command.address}: its parameters are pinned afresh at the next join`);
  return CLIENT_EXIT.ok;
}

function firstLine(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file";
  return (err as Error).message.split("\n")[0];
}
