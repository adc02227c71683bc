/**
 * aeschat client: end-to-end encrypted group chat. This entry point parses flags, finds the passphrase, and runs
 * the interactive chat (stdin is a terminal) or script mode; every failure becomes one line on stderr and a
 * documented exit code.
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
import { type Dial, dialServer } from "./lib/client/link.ts";
import { isWeakPassphrase, PASSPHRASE_ENV, PassphraseError, presetPassphrase } from "./lib/client/passphrase.ts";
import { sanitize } from "./lib/client/render.ts";
import { ScriptRun } from "./lib/client/script.ts";
import { JoinError, Session, SessionError } from "./lib/client/session.ts";
import { runTerminal } from "./lib/client/terminal.ts";
import { versionLine } from "./lib/version.ts";

export { CLIENT_EXIT };

/** How long script mode waits for unstored lines after SIGINT or SIGTERM. */
const INTERRUPT_DRAIN_MS = 5_000;

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

async function runScriptMode(config: ClientConfig, options: { passphrase?: string; dial: Dial }): Promise<number> {
  const err = (line: string) => console.error(line);
  if (config.nick === undefined) {
    throw new Exit(CLIENT_EXIT.usage, "--nick is required when stdin is not a terminal");
  }
  const passphrase = options.passphrase;
  if (passphrase === undefined) {
    throw new Exit(
      CLIENT_EXIT.usage,
      `no passphrase: use --passphrase-file or set ${PASSPHRASE_ENV} (stdin is not a terminal to ask on)`,
    );
  }
  const run = new ScriptRun({ json: config.json, out: (line) => console.log(line), err });
  const session = await Session.connect(options.dial, {
    nick: config.nick,
    iterations: config.iterations,
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
  try {
    await session.join(config.room, {
      passphrase: (room, { creating }) => {
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
    });
  } catch (e) {
    if (e instanceof JoinError) {
      await session.close("denied");
      throw new Exit(
        e.code === "offline" ? CLIENT_EXIT.closed : CLIENT_EXIT.denied,
        `cannot join #${config.room}: ${e.message}`,
      );
    }
    throw e;
  }
  err(`joined #${config.room} as ${session.nick}`);
  const result = await run.say(session, Deno.stdin.readable);
  await session.close("eof");
  return result.unstored > 0 ? CLIENT_EXIT.usage : CLIENT_EXIT.ok;
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
  const interactive = Deno.stdin.isTerminal();
  if (interactive && config.json) {
    throw new Exit(
      CLIENT_EXIT.usage,
      "--json is for script mode, and stdin is a terminal: pipe the input in (see --help)",
    );
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
  if (interactive) return await runTerminal(config, { passphrase, dial });
  return await runScriptMode(config, { passphrase, dial });
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    // Messages may carry the server's words: neutralized like everything else it sends.
    if (err instanceof Exit) {
      console.error(`aeschat client: ${sanitize(err.message)}`);
      code = err.code;
    } else if (err instanceof SessionError) {
      console.error(`aeschat client: ${sanitize(err.message)}`);
      code = EXIT_OF_CLOSE[err.kind];
    } else {
      console.error(`aeschat client: internal error: ${sanitize(err instanceof Error ? err.message : String(err))}`);
      code = CLIENT_EXIT.internal;
    }
  }
  Deno.exit(code);
}
