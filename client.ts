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
  parseClientFlags,
  UsageError,
} from "./lib/client/config.ts";
import { isWeakPassphrase, PASSPHRASE_ENV, PassphraseError, presetPassphrase } from "./lib/client/passphrase.ts";
import { runScript, scriptPrinter } from "./lib/client/script.ts";
import { JoinError, Session, SessionError } from "./lib/client/session.ts";
import { runTerminal } from "./lib/client/terminal.ts";
import { versionLine } from "./lib/version.ts";

export { CLIENT_EXIT };

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

async function runScriptMode(config: ClientConfig, options: { passphrase?: string; caCerts?: string[] }) {
  const err = (line: string) => console.error(line);
  if (config.nick === undefined) {
    throw new Exit(CLIENT_EXIT.usage, "--nick is required when stdin is not a terminal");
  }
  const passphrase = options.passphrase;
  if (passphrase === undefined) {
    throw new Exit(
      CLIENT_EXIT.usage,
      `no passphrase: set ${PASSPHRASE_ENV} or use --passphrase-file (stdin is not a terminal to ask on)`,
    );
  }
  const printer = scriptPrinter({ json: config.json, out: (line) => console.log(line), err });
  const session = await Session.connect(
    { host: config.host, port: config.port, tls: config.tls, caCerts: options.caCerts },
    {
      nick: config.nick,
      iterations: config.iterations,
      reconnectForMs: config.reconnectFor * 1000,
      onEvent: (event) => {
        printer(event);
        // Reconnecting gave up: nothing more can be sent or received.
        if (event.kind === "closed") Deno.exit(EXIT_OF_CLOSE[event.error.kind]);
      },
    },
  );
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    // Like /quit: give what was sent a moment to be stored, say goodbye, and leave.
    if (session.unacked > 0) {
      err(`waiting for ${session.unacked} messages to be stored…`);
      await session.drain({ timeoutMs: 5_000 }).catch((e) => err(`aeschat client: ${e.message}`));
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
  const result = await runScript(session, { input: Deno.stdin.readable, out: (line) => console.log(line), err });
  await session.close("eof");
  return result.refused > 0 ? CLIENT_EXIT.usage : CLIENT_EXIT.ok;
}

async function main(args: string[]): Promise<number> {
  let config: ClientConfig;
  try {
    config = parseClientFlags(args);
  } catch (err) {
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
  let passphrase: string | undefined;
  try {
    passphrase = await presetPassphrase({ env: Deno.env.get(PASSPHRASE_ENV), file: config.passphraseFile });
  } catch (err) {
    if (err instanceof PassphraseError) throw new Exit(CLIENT_EXIT.usage, err.message);
    throw err;
  }
  const caCerts = await readCa(config);
  if (Deno.stdin.isTerminal()) return await runTerminal(config, { passphrase, caCerts });
  return await runScriptMode(config, { passphrase, caCerts });
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    if (err instanceof Exit) {
      console.error(`aeschat client: ${err.message}`);
      code = err.code;
    } else if (err instanceof SessionError) {
      console.error(`aeschat client: ${err.message}`);
      code = EXIT_OF_CLOSE[err.kind];
    } else {
      console.error(`aeschat client: internal error: ${err instanceof Error ? err.message : String(err)}`);
      code = CLIENT_EXIT.internal;
    }
  }
  Deno.exit(code);
}
