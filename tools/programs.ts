/**
 * aeschat's two programs as the tools drive them (`deno task demo`, `deno task smoke`): started from source with
 * their deno.json tasks, or as executables, and used only through their documented command line — flags, environment
 * variables, stdin and stdout. Every use of that command line by the tools is in this module, so when the programs'
 * flags or output change, this is the one place to adapt.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import denoConfig from "../deno.json" with { type: "json" };

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** How long a wait for a program's output lasts by default: generous, for slow and busy machines. */
export const WAIT_MS = 60_000;

/** How to start each program: the command, then the arguments that come before the program's own. */
export interface Launch {
  /** The server's command line prefix. */
  server: string[];
  /** The client's command line prefix. */
  client: string[];
  /** The working directory for source runs (where deno.json is); executables run in the caller's directory. */
  cwd?: string;
}

/**
 * The programs run from source: `deno` with the words of the `server` and `client` tasks of deno.json, so with the
 * same permission sets the executables are compiled with.
 *
 * @returns the launch
 */
export function fromSource(): Launch {
  const task = (name: "server" | "client") => {
    const words = (denoConfig.tasks as Record<string, string>)[name].split(/\s+/);
    if (words[0] !== "deno") throw new Error(`the ${name} task does not start with deno`);
    return [Deno.execPath(), ...words.slice(1).map((w) => (w.endsWith(".ts") ? ROOT + w : w))];
  };
  return { server: task("server"), client: task("client"), cwd: ROOT };
}

/**
 * The programs as executables.
 *
 * @param paths the two files
 * @returns the launch
 */
export function fromExecutables(paths: { server: string; client: string }): Launch {
  return { server: [paths.server], client: [paths.client] };
}

/** A started program whose output is collected as it arrives. */
export class Program {
  /** The process. */
  readonly child: Deno.ChildProcess;
  /** Who it is, for error messages. */
  readonly name: string;
  /** Everything written to stdout so far. */
  stdout = "";
  /** Everything written to stderr so far. */
  stderr = "";
  /** Resolves with the exit status once the process has ended and its output is read. */
  readonly done: Promise<Deno.CommandStatus>;
  #exited = false;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #signal: AbortSignal | undefined;

  /**
   * @param command the command line prefix (from a Launch)
   * @param options.name who it is
   * @param options.args the program's own arguments
   * @param options.env extra environment variables
   * @param options.stdin pipe stdin (default: none)
   * @param options.signal when aborted, every wait fails at once
   * @param options.cwd the working directory
   */
  constructor(
    command: string[],
    options: {
      name: string;
      args: string[];
      env?: Record<string, string>;
      stdin?: boolean;
      signal?: AbortSignal;
      cwd?: string;
    },
  ) {
    this.name = options.name;
    this.#signal = options.signal;
    this.child = new Deno.Command(command[0], {
      args: [...command.slice(1), ...options.args],
      cwd: options.cwd,
      env: { NO_COLOR: "1", ...options.env },
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin) this.#stdin = this.child.stdin.getWriter();
    const collect = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this[key] += text;
    };
    const collected = Promise.all([collect(this.child.stdout, "stdout"), collect(this.child.stderr, "stderr")]);
    this.done = collected.then(() => this.child.status).finally(() => this.#exited = true);
  }

  /**
   * Waits until `test` holds; fails at once if this program exits first or the signal is aborted.
   *
   * @param test checked every 20 ms
   * @param what described in the error
   * @param options.timeoutMs give up after this long (default WAIT_MS)
   */
  async until(test: () => boolean, what: string, options: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = performance.now() + (options.timeoutMs ?? WAIT_MS);
    while (!test()) {
      if (this.#signal?.aborted) throw new Error("interrupted");
      if (this.#exited) throw new Error(`${this.name} exited before ${what}:\n${this.stderr}`);
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${this.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * Writes one line to stdin.
   *
   * @param line the text, without the line break
   */
  async say(line: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(line + "\n"));
  }

  /**
   * Closes stdin (end of input) and waits for the exit.
   *
   * @returns the exit status
   */
  async finish(): Promise<Deno.CommandStatus> {
    await this.#stdin?.close().catch(() => {});
    return await this.done;
  }

  /**
   * Asks the program to stop (SIGTERM; where that cannot be sent, it is killed) and waits for the exit.
   *
   * @returns the exit status
   */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      this.kill();
    }
    return await this.done;
  }

  /** Kills the program at once, if it still runs. */
  kill(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * Runs `--version` of one program.
 *
 * @param launch how to start it
 * @param program which one
 * @returns the exit code and the output
 */
export async function versionOf(
  launch: Launch,
  program: "server" | "client",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = launch[program];
  const output = await new Deno.Command(command[0], {
    args: [...command.slice(1), "--version"],
    cwd: launch.cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** A server that printed its listening line. */
export interface StartedServer {
  /** The process. */
  program: Program;
  /** The port it listens on (127.0.0.1). */
  port: number;
}

const LISTENING = /aeschat server listening on [^:\s]+:(\d+) /;

/**
 * Starts the server on 127.0.0.1 and an ephemeral port, and waits for its listening line.
 *
 * @param launch how to start it
 * @param options.db the database file
 * @param options.signal when aborted, the wait fails at once
 * @returns the server and its port
 */
export async function startServer(
  launch: Launch,
  options: { db: string; signal?: AbortSignal },
): Promise<StartedServer> {
  const program = new Program(launch.server, {
    name: "the server",
    args: ["--host", "127.0.0.1", "--port", "0", "--db", options.db, "--log-level", "warn"],
    signal: options.signal,
    cwd: launch.cwd,
  });
  try {
    await program.until(() => LISTENING.test(program.stdout), "the server's listening line");
  } catch (err) {
    program.kill();
    await program.done.catch(() => {});
    throw err;
  }
  return { program, port: Number(LISTENING.exec(program.stdout)![1]) };
}

/**
 * Starts a client in script mode with `--json` output; stdin stays open for `say` until `finish`.
 *
 * @param launch how to start it
 * @param options.port the server's port
 * @param options.nick the nick
 * @param options.room the room (created with this passphrase by the first client to join)
 * @param options.passphrase given in AESCHAT_PASSPHRASE, never on the command line
 * @param options.home the client's own directory (AESCHAT_HOME), kept across runs of the same user
 * @param options.iterations PBKDF2 iterations when this client creates the room, and the lowest it accepts (default:
 *   the client's)
 * @param options.signal when aborted, every wait fails at once
 * @returns the client
 */
export function startClient(
  launch: Launch,
  options: {
    port: number;
    nick: string;
    room: string;
    passphrase: string;
    home: string;
    iterations?: number;
    signal?: AbortSignal;
  },
): Program {
  // A room made with fewer iterations than the client's floor is refused on first sight unless the floor is lowered.
  const iterations = options.iterations === undefined
    ? []
    : ["--iterations", String(options.iterations), "--min-iterations", String(options.iterations)];
  return new Program(launch.client, {
    name: `${options.nick}'s client`,
    args: [
      "--host",
      "127.0.0.1",
      "--port",
      String(options.port),
      "--nick",
      options.nick,
      "--room",
      options.room,
      "--json",
      ...iterations,
    ],
    env: { AESCHAT_PASSPHRASE: options.passphrase, AESCHAT_HOME: options.home },
    stdin: true,
    signal: options.signal,
    cwd: launch.cwd,
  });
}

/**
 * Whether a script-mode client says it has joined the room (its status line on stderr).
 *
 * @param client the client
 * @param room the room
 * @returns true once joined
 */
export function hasJoined(client: Program, room: string): boolean {
  return client.stderr.includes(`joined #${room}`);
}

/** One message as a `--json` client prints it. */
export interface ReceivedMessage {
  /** The server's sequence number in the room. */
  seq: number;
  /** The sender's nick. */
  from: string;
  /** The sender's time, milliseconds since the epoch. */
  ts: number;
  /** The decrypted text. */
  text: string;
  /** True for messages replayed on join. */
  history?: boolean;
}

/**
 * The messages a `--json` client printed so far (complete lines only: the last one may still be arriving).
 *
 * @param client the client
 * @returns the messages, in the order printed
 */
export function received(client: Program): ReceivedMessage[] {
  return client.stdout.split(/\r?\n/).slice(0, -1).filter((l) => l !== "").map((l) => JSON.parse(l));
}
