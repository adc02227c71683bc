/**
 * The real interactive client in a real terminal: tmux on a private socket in the test's own temporary directory,
 * 120 x 40 unless asked otherwise, with helpers to type, press keys, paste (with or without bracketed paste), resize,
 * read the screen and the bell. Used by the terminal tests and bench:client.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT, taskArgs } from "./programs.ts";

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * One terminal (120 x 40) with the client running in it, on a private tmux server whose socket lives in the test's
 * own temporary directory (tmux leaves a `-L` socket behind in /tmp/tmux-UID after kill-server).
 */
export class TmuxScreen {
  #dir = "";
  #socket = "";

  /**
   * Starts the client in a new tmux server; after the client exits the pane shows `EXIT=<code>`.
   *
   * @param args client flags
   * @param options.env extra environment for the client
   * @param options.colour leave NO_COLOR unset (it is set by default)
   * @param options.columns the terminal's width (default 120)
   * @param options.script run this script (a path from the repository root) with the client's permissions instead
   *   of client.ts
   */
  static async start(
    args: string[],
    options: { env?: Record<string, string>; colour?: boolean; columns?: number; script?: string } = {},
  ) {
    const screen = new TmuxScreen();
    try {
      screen.#dir = await Deno.makeTempDir({ prefix: "aeschat-tty-" });
      screen.#socket = `${screen.#dir}/tmux.sock`;
      // A home of its own, never the user's, unless the test gives one (to restart the same user).
      const env = {
        ...(options.colour ? {} : { NO_COLOR: "1" }),
        TERM: "xterm-256color",
        AESCHAT_HOME: `${screen.#dir}/home`,
        ...options.env,
      };
      const program = taskArgs("client").map((w) =>
        options.script && w.endsWith("client.ts") ? ROOT + options.script : w
      );
      const script = [
        `cd ${quote(ROOT)}`,
        "unset NO_COLOR AESCHAT_PASSPHRASE AESCHAT_IDENTITY_PASSPHRASE",
        `${Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`).join(" ")} ${quote(Deno.execPath())} ${
          [...program, ...args].map(quote).join(" ")
        }`,
        'echo "EXIT=$?"',
        "sleep 600",
      ].join("\n");
      await Deno.writeTextFile(`${screen.#dir}/run.sh`, script);
      const columns = String(options.columns ?? 120);
      await screen.tmux("new-session", "-d", "-s", "main", "-x", columns, "-y", "40", `sh ${screen.#dir}/run.sh`);
      return screen;
    } catch (err) {
      await screen.close();
      throw err;
    }
  }

  /**
   * Runs a tmux command on this terminal's server.
   *
   * @param args the tmux arguments
   * @returns its stdout
   */
  async tmux(...args: string[]): Promise<string> {
    const out = await new Deno.Command("tmux", {
      args: ["-S", this.#socket, ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    if (!out.success) throw new Error(`tmux ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    return new TextDecoder().decode(out.stdout);
  }

  /** The whole screen and its scrollback, lines joined where they wrapped. */
  async text(options: { escapes?: boolean } = {}): Promise<string> {
    return await this.tmux("capture-pane", "-p", "-J", "-S", "-", ...(options.escapes ? ["-e"] : []), "-t", "main");
  }

  /** The last non-empty line: the prompt line. */
  async lastLine(): Promise<string> {
    const lines = (await this.text()).split("\n").filter((l) => l.trim() !== "");
    return lines[lines.length - 1] ?? "";
  }

  /** Polls the screen until `test` holds, and returns it; fails with the screen after `timeoutMs`. */
  async waitFor(test: (text: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const text = await this.text();
      if (test(text)) return text;
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}; screen:\n${text}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Polls until the prompt line (the last non-empty line) is exactly `expected`, trailing blanks aside. */
  async waitForLastLine(expected: string, what: string, timeoutMs?: number): Promise<void> {
    await this.waitFor(
      (t) => {
        const lines = t.split("\n").filter((l) => l.trim() !== "");
        return lines[lines.length - 1]?.trimEnd() === expected.trimEnd();
      },
      `${what} (last line ${JSON.stringify(expected)})`,
      timeoutMs,
    );
  }

  /** Types text literally, without Enter. */
  async type(text: string): Promise<void> {
    await this.tmux("send-keys", "-t", "main", "-l", text);
  }

  /** Presses keys by tmux name (Enter, Up, C-c…). */
  async press(...keys: string[]): Promise<void> {
    await this.tmux("send-keys", "-t", "main", ...keys);
  }

  /** Types a line and presses Enter. */
  async line(text: string): Promise<void> {
    await this.type(text);
    await this.press("Enter");
  }

  /** The process id of the client (the child of the pane's shell). */
  async clientPid(): Promise<number> {
    const shell = (await this.tmux("list-panes", "-t", "main", "-F", "#{pane_pid}")).trim();
    const out = await new Deno.Command("pgrep", { args: ["-P", shell], stdout: "piped" }).output();
    const pids = new TextDecoder().decode(out.stdout).trim().split("\n").filter((p) => p !== "");
    assert.equal(pids.length, 1, `one child of the pane's shell ${shell}: ${pids}`);
    return Number(pids[0]);
  }

  /** Waits for the `EXIT=` line the shell prints after the client and returns the code. */
  async exitCode(): Promise<number> {
    const text = await this.waitFor((t) => /EXIT=\d+/.test(t), "the client to exit");
    return Number(/EXIT=(\d+)/.exec(text)![1]);
  }

  /**
   * Pastes text as a terminal does (tmux's paste buffer; line breaks arrive as Enter). With `bracketed`, tmux wraps
   * it in the bracketed paste markers, as a terminal does for a program that turned the mode on.
   *
   * @param text what to paste
   * @param options.bracketed paste as a terminal with bracketed paste does
   */
  async paste(text: string, options: { bracketed?: boolean } = {}): Promise<void> {
    const file = `${this.#dir}/paste.txt`;
    await Deno.writeTextFile(file, text);
    await this.tmux("load-buffer", "-b", "paste", file);
    await this.tmux("paste-buffer", ...(options.bracketed ? ["-p"] : []), "-d", "-b", "paste", "-t", "main");
  }

  /**
   * Resizes the terminal, as a user dragging the window's edge does (the program gets SIGWINCH).
   *
   * @param columns the new width
   * @param rows the new height (default 40)
   */
  async resize(columns: number, rows = 40): Promise<void> {
    await this.tmux("resize-window", "-t", "main", "-x", String(columns), "-y", String(rows));
  }

  /** Whether the terminal's bell has rung (tmux's window bell flag; it stays set). */
  async bellRang(): Promise<boolean> {
    return (await this.tmux("display-message", "-p", "-t", "main", "#{window_bell_flag}")).trim() === "1";
  }

  /** The visible screen only (no scrollback), rows as the terminal shows them. */
  async visible(): Promise<string> {
    return await this.tmux("capture-pane", "-p", "-t", "main");
  }

  /** Stops tmux and removes the temporary directory. */
  async close(): Promise<void> {
    if (this.#socket) await this.tmux("kill-server").catch(() => {});
    if (this.#dir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
