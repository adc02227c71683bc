/**
 * Starts the real programs for end-to-end tests, with exactly the permission flags of their `deno task` entries
 * (and so of the compiled executables, which are built from the same permission sets in deno.json).
 *
 * @module
 */

import denoConfig from "../../deno.json" with { type: "json" };

/** The repository root. */
export const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * The deno arguments of a task such as "server" or "client", read from deno.json so tests cannot drift from it.
 *
 * @param task the task name (a task whose line is one `deno` command)
 * @returns the arguments after `deno`, with script paths made absolute
 */
export function taskArgs(task: string): string[] {
  const line = (denoConfig.tasks as Record<string, string>)[task];
  const words = line.split(/\s+/);
  if (words[0] !== "deno") throw new Error(`task ${task} does not start with deno`);
  return words.slice(1).map((w) => (w.endsWith(".ts") ? ROOT + w : w));
}

/** A started program with line-oriented access to its output. */
export class Program {
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** Everything written to stdout so far. */
  stdout = "";
  /** Everything written to stderr so far. */
  stderr = "";
  #waiters: { test: () => boolean; resolve: () => void }[] = [];
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  /** Resolves with the exit status once the process has ended and its output is read. */
  readonly status: Promise<Deno.CommandStatus>;

  /**
   * @param child the process, spawned with piped stdout and stderr
   */
  constructor(child: Deno.ChildProcess, options: { stdin: boolean }) {
    this.child = child;
    if (options.stdin) this.#stdin = child.stdin.getWriter();
    const pump = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this[key] += decoder.decode(chunk, { stream: true });
        this.#check();
      }
    };
    const pumps = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]);
    this.status = pumps.then(() => child.status);
  }

  #check(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.test()) return true;
      w.resolve();
      return false;
    });
  }

  /**
   * Waits until a condition on the output holds.
   *
   * @param test checked after every chunk of output
   * @param options.timeoutMs give up after this long
   * @param options.what described in the timeout error
   */
  waitFor(test: () => boolean, options: { timeoutMs?: number; what?: string } = {}): Promise<void> {
    if (test()) return Promise.resolve();
    const timeoutMs = options.timeoutMs ?? 20_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${options.what ?? "output"}\nstdout: ${
              this.stdout.slice(-2000)
            }\nstderr: ${this.stderr.slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push({ test, resolve: done });
    });
  }

  /**
   * Writes text to stdin.
   *
   * @param text what to write
   */
  async write(text: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(text));
  }

  /** Closes stdin (EOF). */
  async closeStdin(): Promise<void> {
    await this.#stdin?.close().catch(() => {});
  }

  /**
   * Sends a signal and waits for the exit.
   *
   * @param signal the signal (default SIGTERM)
   * @returns the exit status
   */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
    await this.closeStdin();
    return await this.status;
  }
}

/**
 * Spawns `deno <task flags> <args>` with piped stdio.
 *
 * @param task "server" or "client"
 * @param options.args program arguments
 * @param options.env extra environment variables (a client without AESCHAT_HOME gets a temporary home, removed when
 *   it exits)
 * @param options.stdin pipe stdin (default: null)
 * @param options.openFiles run it with this limit on open files (`ulimit -n`)
 * @returns the program
 */
export function spawnTask(
  task: "server" | "client",
  options: { args?: string[]; env?: Record<string, string>; stdin?: boolean; openFiles?: number } = {},
): Program {
  // A client gets a home of its own, never the user's, unless the test gives one (to restart the same user).
  const home = task === "client" && options.env?.AESCHAT_HOME === undefined
    ? Deno.makeTempDirSync({ prefix: "aeschat-home-" })
    : undefined;
  const args = [...taskArgs(task), ...(options.args ?? [])];
  // With a file limit, through sh: `exec` keeps the pid, so the child's pid is the program's own.
  const command = options.openFiles === undefined
    ? { path: Deno.execPath(), args }
    : { path: "sh", args: ["-c", `ulimit -n ${options.openFiles} && exec "$0" "$@"`, Deno.execPath(), ...args] };
  const child = new Deno.Command(command.path, {
    args: command.args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...(home ? { AESCHAT_HOME: home } : {}), ...options.env },
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const program = new Program(child, { stdin: options.stdin ?? false });
  if (home) program.status.finally(() => Deno.remove(home, { recursive: true }).catch(() => {}));
  return program;
}

/**
 * Waits for a program to exit, failing (with its stderr) when it has not within a generous deadline.
 *
 * @param program the program
 * @param timeoutMs the deadline (default 60 s: the machine may be loaded)
 * @returns its exit status
 */
export async function exited(program: Program, timeoutMs = 60_000): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      program.status,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms\n${program.stderr}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The JSON objects a client printed with --json, one per line. Every line must be one: anything else on stdout
 * throws (a partial last line, still being written, is left for the next look).
 *
 * @param stdout what it printed
 * @returns the objects, in order
 */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  const lines = stdout.split("\n");
  lines.pop();
  return lines.filter((l) => l !== "").map((l) => JSON.parse(l));
}

/**
 * Environment that gives a program `dir` as the user's home (HOME, XDG_CONFIG_HOME, APPDATA), to check that it writes
 * nothing there; Deno's own cache stays where it is (DENO_DIR), so nothing is compiled again.
 *
 * @param dir an empty directory
 * @returns the variables
 */
export function userHomeEnv(dir: string): Record<string, string> {
  const home = Deno.env.get("HOME") ?? "";
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("XDG_CACHE_HOME") ?? `${home}/.cache`}/deno`;
  return { HOME: dir, XDG_CONFIG_HOME: `${dir}/.config`, APPDATA: dir, DENO_DIR: denoDir };
}

/** A running server process and where it listens. */
export interface ServerProcess {
  /** The process. */
  program: Program;
  /** The real port. */
  port: number;
  /** The database file. */
  db: string;
}

/**
 * Starts the real server on an ephemeral port and waits for its listening line.
 *
 * @param options.db database path (default: a new temporary directory's aeschat.db)
 * @param options.args extra flags
 * @param options.openFiles run it with this limit on open files
 * @returns the server
 */
export async function startServer(
  options: { db?: string; args?: string[]; openFiles?: number } = {},
): Promise<ServerProcess> {
  const db = options.db ?? `${await Deno.makeTempDir({ prefix: "aeschat-test-" })}/aeschat.db`;
  const program = spawnTask("server", {
    args: ["--port", "0", "--db", db, ...(options.args ?? [])],
    openFiles: options.openFiles,
  });
  const re = /aeschat server listening on [^:\s]+:(\d+) /;
  await Promise.race([
    program.waitFor(() => re.test(program.stdout), { what: "the listening line" }),
    program.status.then((s) => {
      throw new Error(`server exited with ${s.code} before listening: ${program.stderr}`);
    }),
  ]);
  const port = Number(re.exec(program.stdout)![1]);
  return { program, port, db };
}

/**
 * Waits until the server has logged a connection of this nick as gone (it detaches it first: from then on what is sent
 * to the nick waits, undelivered, unless another of its connections is there).
 *
 * @param server the server
 * @param nick the nick (as the server logs it)
 */
export function disconnected(server: ServerProcess, nick: string): Promise<void> {
  const gone = new RegExp(`disconnect remote=\\S+ nick=${nick}(\\s|$)`, "m");
  return server.program.waitFor(() => gone.test(server.program.stderr), { what: `${nick}'s disconnect` });
}

/**
 * Runs `aeschat-server admin ARGS` to the end.
 *
 * @param args the arguments after `admin`
 * @returns the exit code and the output
 */
export async function runAdminCommand(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const program = spawnTask("server", { args: ["admin", ...args] });
  const status = await program.status;
  return { code: status.code, stdout: program.stdout, stderr: program.stderr };
}

/**
 * Stops a server started by {@link startServer} and removes its temporary directory (the database's).
 *
 * @param server the server
 */
export async function removeServer(server: ServerProcess): Promise<void> {
  await server.program.stop();
  await Deno.remove(server.db.slice(0, server.db.lastIndexOf("/")), { recursive: true }).catch(() => {});
}
