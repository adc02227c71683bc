/**
 * The benchmark's process plumbing: spawning the server, the relay and the load workers (with a raised file
 * descriptor limit when a scenario needs one), reading their JSON-line events, and reading CPU time and memory of
 * a process from /proc.
 *
 * @module
 */

import denoConfig from "../deno.json" with { type: "json" };

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname;

/** Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux). */
export const CLOCK_TICKS = 100;

/**
 * The deno arguments of `deno task server`, read from deno.json so that the benchmark runs the server exactly as
 * users do (same permission set, same flags).
 *
 * @returns the arguments after `deno`, with the script path made absolute
 */
export function serverTaskArgs(): string[] {
  const line = (denoConfig.tasks as Record<string, string>).server;
  const words = line.split(/\s+/);
  if (words[0] !== "deno") throw new Error("task server does not start with deno");
  return words.slice(1).map((w) => (w.endsWith(".ts") ? ROOT + w : w));
}

/** CPU time and memory of one process, from /proc. */
export interface ProcessSample {
  /** User + system CPU time of all its threads, in seconds (NaN once it is gone). */
  cpu: number;
  /** Peak resident memory (VmHWM) in MB. */
  peakMb: number;
  /** Current resident memory (VmRSS) in MB. */
  rssMb: number;
}

function parseSample(stat: string, status: string): ProcessSample {
  // The command name in parentheses may hold spaces: fields are counted after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return {
    cpu: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS,
    peakMb: kb("VmHWM") / 1024,
    rssMb: kb("VmRSS") / 1024,
  };
}

/**
 * Reads CPU time and memory of processes. Deno lets only --allow-all programs read another process's /proc
 * entries, so one `cat` reads them all (also a near-simultaneous snapshot).
 *
 * @param pids the processes
 * @returns one sample per pid, in order
 */
export async function sampleProcesses(pids: number[]): Promise<ProcessSample[]> {
  const script =
    'for p in "$@"; do cat /proc/$p/stat 2>/dev/null; echo "@@"; cat /proc/$p/status 2>/dev/null; echo "@@"; done';
  const out = await new Deno.Command("sh", { args: ["-c", script, "sh", ...pids.map(String)], stdout: "piped" })
    .output();
  const parts = new TextDecoder().decode(out.stdout).split("@@\n");
  return pids.map((_, i) => {
    const stat = parts[2 * i] ?? "";
    const status = parts[2 * i + 1] ?? "";
    return stat.trim() === "" ? { cpu: NaN, peakMb: NaN, rssMb: NaN } : parseSample(stat, status);
  });
}

let softLimit: number | undefined;

/** The soft limit on open files of this process (what children inherit). */
export function openFileLimit(): number {
  if (softLimit === undefined) {
    const out = new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" }).outputSync();
    const text = new TextDecoder().decode(out.stdout).trim();
    softLimit = text === "unlimited" ? Infinity : Number(text);
  }
  return softLimit;
}

/** A child process whose stdout is JSON lines (events) or plain lines. */
export class Child {
  /** Every child started and not yet known to have exited, for {@link stopAll}. */
  static readonly running: Set<Child> = new Set();

  /** The process. */
  readonly process: Deno.ChildProcess;
  /** Its pid (the deno process itself, also when started through sh). */
  readonly pid: number;
  /** What it printed on stdout, line by line, not yet taken. */
  lines: string[] = [];
  /** Its stderr so far (last 20000 characters). */
  stderr = "";
  /** The first 100 WARN and ERROR lines of its stderr (server log lines). */
  warnings: string[] = [];
  /** Resolves with its exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  #wake: (() => void) | undefined;
  #exited = false;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;

  /**
   * Spawns `deno ARGS`, through `sh -c "ulimit -n N && exec ..."` when `openFiles` is above the current limit.
   *
   * @param args the deno arguments
   * @param options.openFiles file descriptors the process will need
   * @param options.stdin pipe stdin for commands
   */
  constructor(args: string[], options: { openFiles?: number; stdin?: boolean } = {}) {
    const need = options.openFiles ?? 0;
    const command = need + 64 > openFileLimit()
      ? new Deno.Command("sh", {
        args: ["-c", `ulimit -n ${need + 256} && exec "$0" "$@"`, Deno.execPath(), ...args],
        cwd: ROOT,
        stdin: options.stdin ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      })
      : new Deno.Command(Deno.execPath(), {
        args,
        cwd: ROOT,
        stdin: options.stdin ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      });
    this.process = command.spawn();
    this.pid = this.process.pid;
    if (options.stdin) this.#stdin = this.process.stdin.getWriter();
    const pumps = Promise.all([this.#pumpLines(this.process.stdout), this.#pumpErr(this.process.stderr)]);
    Child.running.add(this);
    this.status = pumps.then(() => this.process.status).finally(() => {
      Child.running.delete(this);
      this.#exited = true;
      this.#wake?.();
    });
  }

  async #pumpLines(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        this.lines.push(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      this.#wake?.();
    }
  }

  async #pumpErr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      this.stderr = (this.stderr + text).slice(-20000);
      // Warnings and errors are kept apart, so that many ordinary lines after them cannot push them out.
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      for (const line of lines) if (/ (WARN|ERROR) /.test(line) && this.warnings.length < 100) this.warnings.push(line);
    }
  }

  /**
   * Takes the first stdout line that matches, waiting for it.
   *
   * @param test the condition
   * @param options.timeoutMs how long to wait
   * @param options.what described in errors
   * @returns the line
   */
  async line(test: (line: string) => boolean, options: { timeoutMs?: number; what?: string } = {}): Promise<string> {
    const deadline = performance.now() + (options.timeoutMs ?? 60_000);
    while (true) {
      const i = this.lines.findIndex(test);
      if (i >= 0) return this.lines.splice(i, 1)[0];
      const fatal = this.lines.find((l) => l.includes('"event":"fatal"'));
      if (fatal) throw new Error(`process ${this.pid} failed: ${fatal.slice(0, 2000)}`);
      const left = deadline - performance.now();
      if (left <= 0 || this.#exited) {
        throw new Error(
          `process ${this.pid} ${this.#exited ? "exited" : "timed out"} waiting for ${options.what ?? "a line"}; ` +
            `stderr: ${this.stderr.slice(-1500)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Waits for a JSON event line `{"event": name, ...}`.
   *
   * @param name the event name
   * @param options.timeoutMs how long to wait
   * @returns the event
   */
  async event(name: string, options: { timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
    const line = await this.line((l) => l.startsWith(`{"event":"${name}"`), { ...options, what: `event ${name}` });
    return JSON.parse(line);
  }

  /**
   * Sends one JSON command line on stdin.
   *
   * @param command the command object
   */
  async command(command: Record<string, unknown>): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
  }

  /**
   * Stops the process (signal, then SIGKILL after a grace period) and waits for it.
   *
   * @param signal the first signal (default SIGTERM)
   * @param options.graceMs how long before SIGKILL
   * @returns the exit status
   */
  async stop(signal: Deno.Signal = "SIGTERM", options: { graceMs?: number } = {}): Promise<Deno.CommandStatus> {
    await this.#stdin?.close().catch(() => {});
    if (!this.#exited) {
      try {
        this.process.kill(signal);
      } catch {
        // already gone
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          this.process.kill("SIGKILL");
        } catch {
          // already gone
        }
        resolve();
      }, options.graceMs ?? 5000);
    });
    await Promise.race([this.status, killed]);
    clearTimeout(timer);
    return await this.status;
  }
}

/**
 * Stops every child still running (SIGTERM, then SIGKILL after the grace period), for a clean exit on Ctrl-C or
 * on a failure.
 *
 * @param options.graceMs how long each child may take before SIGKILL
 */
export async function stopAll(options: { graceMs?: number } = {}): Promise<void> {
  await Promise.allSettled([...Child.running].map((c) => c.stop("SIGTERM", { graceMs: options.graceMs ?? 3000 })));
}

/**
 * CPU time the whole machine spent busy so far (user, nice, system, irq, softirq, steal of every core), from
 * /proc/stat, in seconds: with the server's and the load workers' own times it tells how much else ran. Read
 * through `head`, since Deno lets only --allow-all programs read /proc/stat.
 *
 * @returns busy seconds since boot, summed over the cores
 */
export async function machineBusy(): Promise<number> {
  const out = await new Deno.Command("head", { args: ["-n", "1", "/proc/stat"], stdout: "piped" }).output();
  const line = new TextDecoder().decode(out.stdout);
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + (steal || 0)) / CLOCK_TICKS;
}
