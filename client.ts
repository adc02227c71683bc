/**
 * aeschat client: end-to-end encrypted group chat. This entry point parses the command line, opens the home
 * ($AESCHAT_HOME: the identity key and the pins), and runs a subcommand, the interactive chat (stdin is a terminal)
 * or script mode; every failure becomes one line on stderr and a documented exit code.
 *
 * @module
 */

import denoConfig from "./deno.json" with { type: "json" };
import {
  CLIENT_EXIT,
  type ClientConfig,
  clientHelp,
  EXIT_OF_CLOSE,
  NickFlagError,
  parseClientFlags,
  UsageError,
} from "./lib/client/config.ts";
import { Home, HomeError, homePath } from "./lib/client/home.ts";
import { type Dial, dialServer } from "./lib/client/link.ts";
import { isWeakPassphrase, PASSPHRASE_ENV, PassphraseError, presetPassphrase } from "./lib/client/passphrase.ts";
import { sanitize } from "./lib/client/render.ts";
import { Screen } from "./lib/client/screen.ts";
import { ScriptRun, type ScriptTarget } from "./lib/client/script.ts";
import { JoinError, type JoinHooks, Session, SessionError } from "./lib/client/session.ts";
import { runSubcommand, SubcommandError } from "./lib/client/subcommands.ts";
import { runTerminal } from "./lib/client/terminal.ts";
import { versionLine } from "./lib/version.ts";

export { CLIENT_EXIT };

/** How long script mode waits for unstored lines after SIGINT or SIGTERM. */
const INTERRUPT_DRAIN_MS = 5_000;
/** The environment variable that unlocks a protected identity key where nothing can ask (script mode). */
const IDENTITY_PASSPHRASE_ENV = "AESCHAT_IDENTITY_PASSPHRASE";

class Exit extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

async function readCa(config: ClientConfig): Promise<string[] | undefined> {
  if (config.ca === undefined) return undefined;
  try {
    return [await Deno.readTextFile(config.ca)];
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message.split("\n")[0];
    throw new Exit(CLIENT_EXIT.usage, `cannot read --ca ${config.ca}: ${why}`);
  }
}

/** The home's directory, from the environment. */
function homeDir(): string {
  try {
    return homePath((name) => Deno.env.get(name));
  } catch (err) {
    if (err instanceof HomeError) throw new Exit(CLIENT_EXIT.usage, err.message);
    throw err;
  }
}

/** Asks a question on the terminal (a Screen of its own, closed after the answer). */
async function askOnTerminal(question: string, options: { secret: boolean }): Promise<string | undefined> {
  const screen = new Screen({ maxLineBytes: 4096 });
  try {
    return await screen.ask(question, options);
  } finally {
    screen.end();
  }
}

/** Opens the home where no chat screen exists: the identity passphrase from the terminal, or the environment. */
function openHome(dir: string): Promise<Home> {
  const fromEnv = Deno.env.get(IDENTITY_PASSPHRASE_ENV);
  return Home.open(dir, {
    passphrase: () =>
      fromEnv !== undefined && fromEnv !== ""
        ? Promise.resolve(fromEnv)
        : Deno.stdin.isTerminal()
        ? askOnTerminal("passphrase of your identity key: ", { secret: true })
        : Promise.resolve(undefined),
  });
}

async function firstStdinLine(): Promise<string | undefined> {
  let text = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    if (text.includes("\n")) break;
  }
  return text === "" ? undefined : text.split(/\r?\n/, 1)[0];
}

/** Passphrase hooks for script mode: the preset passphrase, with the creation notes on stderr. */
function scriptHooks(passphrase: string | undefined, err: (line: string) => void): JoinHooks {
  return {
    passphrase: (room, { creating }) => {
      if (passphrase === undefined) {
        throw new Exit(
          CLIENT_EXIT.usage,
          `no passphrase for #${room}: use --passphrase-file or set ${PASSPHRASE_ENV} (stdin is not a terminal to ` +
            `ask on)`,
        );
      }
      if (creating) {
        err(`creating room #${room}`);
        if (isWeakPassphrase(passphrase)) err("warning: the passphrase is shorter than 12 characters");
      }
      return Promise.resolve(passphrase);
    },
    deriving: (_room, { iterations }) => {
      err(`deriving room key (${iterations} iterations)…`);
      return () => {};
    },
  };
}

/** A join refusal as an exit: 7 for a room whose parameters changed or are too weak, 6 offline, else 4. */
function joinExit(room: string, e: JoinError): Exit {
  const code = e.code === "changed" || e.code === "weak"
    ? CLIENT_EXIT.changed
    : e.code === "offline"
    ? CLIENT_EXIT.closed
    : CLIENT_EXIT.denied;
  return new Exit(code, `cannot join #${room}: ${e.message}`);
}

async function runScriptMode(
  config: ClientConfig,
  options: { passphrase?: string; dial: Dial; home: Home },
): Promise<number> {
  const err = (line: string) => console.error(line);
  if (config.nick === undefined) {
    throw new Exit(CLIENT_EXIT.usage, "--nick is required when stdin is not a terminal");
  }
  const run = new ScriptRun({
    json: config.json,
    noHistory: config.noHistory,
    out: (line) => console.log(line),
    err,
  });
  const session = await Session.connect(options.dial, {
    nick: config.nick,
    home: options.home,
    address: `${config.host}:${config.port}`,
    tls: config.tls,
    iterations: config.iterations,
    minIterations: config.minIterations,
    remember: config.remember,
    reconnect: { giveUpAfterMs: config.reconnectFor * 1000 },
    onEvent: (event) => {
      run.onEvent(event);
      // The connection did not come back in time (the printer has named every line not stored): nothing more can
      // be sent or received.
      if (event.kind === "closed") Deno.exit(EXIT_OF_CLOSE[event.error.kind]);
    },
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    // Like /quit: give what was sent a moment to be stored, say goodbye, and leave.
    if (session.unsent > 0) {
      err(`waiting for ${session.unsent} messages to be stored…`);
      await session.drain({ timeoutMs: INTERRUPT_DRAIN_MS }).catch(() => {});
      run.reportUnstored();
    }
    await session.close("interrupted");
    Deno.exit(CLIENT_EXIT.ok);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, stop);
    } catch {
      // not available on this platform
    }
  }
  const hooks = scriptHooks(options.passphrase, err);
  const joined: string[] = [];
  for (const room of config.to === undefined ? config.rooms : []) {
    try {
      joined.push((await session.join(room, hooks)).room);
    } catch (e) {
      await session.close("denied");
      if (e instanceof JoinError) throw joinExit(room, e);
      throw e;
    }
    err(`joined #${joined.at(-1)} as ${session.nick}`);
  }
  let target: ScriptTarget = { room: joined[0] };
  if (config.to !== undefined) {
    const recipient = await session.recipient(config.to).catch(async (e) => {
      await session.close("denied");
      if (e instanceof JoinError) {
        throw new Exit(
          e.code === "unknown_nick" ? CLIENT_EXIT.usage : CLIENT_EXIT.connect,
          `cannot send to ${config.to}: ${e.message}`,
        );
      }
      throw e;
    });
    if (recipient.trust === "changed") {
      await session.close("denied");
      throw new Exit(
        CLIENT_EXIT.changed,
        `${recipient.nick}'s key changed (now ${recipient.fingerprint}): nothing was sent; if you checked it: deno ` +
          `task client trust ${recipient.nick} ${recipient.fingerprint}`,
      );
    }
    target = { to: recipient.nick };
    err(`sending to ${recipient.nick} as ${session.nick}`);
  }
  const result = await run.say(session, Deno.stdin.readable, target);
  await session.close("eof");
  if (result.changed) return CLIENT_EXIT.changed;
  return result.unstored > 0 ? CLIENT_EXIT.usage : CLIENT_EXIT.ok;
}

/** `accept ROOM`: connects, finds the invitation, pins and keeps the room's secret, joins once to check it. */
async function runAccept(config: ClientConfig, options: { dial: Dial; home: Home; room: string }): Promise<number> {
  if (config.nick === undefined) throw new Exit(CLIENT_EXIT.usage, "accept needs --nick (who you are on the server)");
  const err = (line: string) => console.error(line);
  const run = new ScriptRun({ json: config.json, noHistory: true, out: (line) => console.log(line), err });
  const session = await Session.connect(options.dial, {
    nick: config.nick,
    home: options.home,
    address: `${config.host}:${config.port}`,
    tls: config.tls,
    reconnect: { giveUpAfterMs: config.reconnectFor * 1000 },
    onEvent: run.onEvent,
  });
  try {
    const joined = await session.accept(options.room);
    err(
      `accepted the invitation to #${joined.room}: its secret is kept in your home; rejoin with --room ${joined.room}`,
    );
    return CLIENT_EXIT.ok;
  } catch (e) {
    if (!(e instanceof JoinError)) throw e;
    if (e.code === "no_invitation") throw new Exit(CLIENT_EXIT.denied, e.message);
    throw joinExit(options.room, e);
  } finally {
    await session.close("quit");
  }
}

async function main(args: string[]): Promise<number> {
  let config: ClientConfig;
  try {
    config = parseClientFlags(args);
  } catch (err) {
    if (err instanceof NickFlagError) throw new Exit(CLIENT_EXIT.nick, `${err.message} (see --help)`);
    if (err instanceof UsageError) throw new Exit(CLIENT_EXIT.usage, `${err.message} (see --help)`);
    throw err;
  }
  if (config.help) {
    console.log(clientHelp(denoConfig.version));
    return CLIENT_EXIT.ok;
  }
  if (config.version) {
    console.log(versionLine("client"));
    return CLIENT_EXIT.ok;
  }
  const dir = homeDir();
  const command = config.command;
  if (command.name !== "chat" && command.name !== "accept") {
    return await runSubcommand(config, {
      dir,
      out: (line) => console.log(line),
      err: (line) => console.error(line),
      ask: Deno.stdin.isTerminal() ? askOnTerminal : undefined,
      open: () => openHome(dir),
      stdinLine: firstStdinLine,
    });
  }
  const interactive = Deno.stdin.isTerminal() && command.name === "chat";
  if (interactive && config.json) {
    throw new Exit(
      CLIENT_EXIT.usage,
      "--json is for script mode, and stdin is a terminal: pipe the input in (see --help)",
    );
  }
  if (interactive && config.to !== undefined) {
    throw new Exit(CLIENT_EXIT.usage, "--to is for script mode; on a terminal use /msg NICK TEXT (see --help)");
  }
  let passphrase: string | undefined;
  try {
    passphrase = await presetPassphrase({
      env: Deno.env.get(PASSPHRASE_ENV),
      file: config.passphraseFile,
      warn: (line) => console.error(`aeschat client: ${line}`),
    });
  } catch (err) {
    if (err instanceof PassphraseError) throw new Exit(CLIENT_EXIT.usage, err.message);
    throw err;
  }
  const dial = dialServer({ host: config.host, port: config.port, tls: config.tls, caCerts: await readCa(config) });
  if (interactive) return await runTerminal(config, { passphrase, dial, homeDir: dir });
  const home = await openHome(dir);
  if (command.name === "accept") return await runAccept(config, { dial, home, room: command.room });
  return await runScriptMode(config, { passphrase, dial, home });
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    // Messages may carry the server's words: neutralized like everything else it sends.
    if (err instanceof Exit || err instanceof SubcommandError) {
      console.error(`aeschat client: ${sanitize(err.message)}`);
      code = err.code;
    } else if (err instanceof SessionError) {
      console.error(`aeschat client: ${sanitize(err.message)}`);
      code = EXIT_OF_CLOSE[err.kind];
    } else if (err instanceof HomeError) {
      const hint = err.kind === "locked" && !Deno.stdin.isTerminal()
        ? ` (without a terminal to ask on: set ${IDENTITY_PASSPHRASE_ENV})`
        : "";
      console.error(`aeschat client: ${sanitize(err.message)}${hint}`);
      code = CLIENT_EXIT.usage;
    } else {
      console.error(`aeschat client: internal error: ${sanitize(err instanceof Error ? err.message : String(err))}`);
      code = CLIENT_EXIT.internal;
    }
  }
  Deno.exit(code);
}
