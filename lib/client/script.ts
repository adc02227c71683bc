/**
 * Script mode: every stdin line is said in the room, in order; received messages (history first) go to stdout one
 * per line, as text or JSON; status and errors go to stderr only. At EOF it waits until the server has stored every
 * line, and every line that was not stored is named on stderr.
 *
 * @module
 */

import type { OutboxItem } from "./outbox.ts";
import { formatJson, formatMessage, sanitize } from "./render.ts";
import { SendError, type Session, type SessionEvent } from "./session.ts";

/** Lines said but not yet stored before script mode stops reading stdin for a while (bounds its memory). */
const WINDOW = 1_000;

/** Where script mode writes. */
export interface ScriptIo {
  /** Print messages as JSON lines. */
  json: boolean;
  /** Machine-readable output: one message per line. */
  out: (line: string) => void;
  /** Human-readable status and errors. */
  err: (line: string) => void;
}

/** The outcome of script mode. */
export interface ScriptResult {
  /** Lines said and stored. */
  stored: number;
  /** Lines not stored: refused here (too long, not well-formed) or by the server, or never acknowledged. */
  unstored: number;
}

/**
 * One run of script mode: its event printer (give {@link ScriptRun.onEvent} to the session), and the loop that says
 * every stdin line.
 *
 * @example
 * ```ts
 * const run = new ScriptRun({ json: false, out: console.log, err: console.error });
 * const session = await Session.connect(dial, { nick: "ci", onEvent: run.onEvent });
 * await session.join("ops", hooks);
 * const result = await run.say(session, Deno.stdin.readable);
 * ```
 */
export class ScriptRun {
  #io: ScriptIo;
  /** The stdin line number and text of each message said, by id, until it is stored. */
  #lines = new Map<string, { n: number; text: string }>();
  #refused = 0;
  #failed = 0;
  #stored = 0;

  /** @param io output format and where to write */
  constructor(io: ScriptIo) {
    this.#io = io;
  }

  /** Prints a session event: messages to stdout, everything else to stderr. */
  onEvent = (event: SessionEvent): void => {
    const { out, err } = this.#io;
    switch (event.kind) {
      case "message":
        return out(this.#io.json ? formatJson(event.message) : formatMessage(event.message, { colour: false }));
      case "older":
        for (const m of event.messages) out(this.#io.json ? formatJson(m) : formatMessage(m, { colour: false }));
        return;
      case "forged":
        return err(
          event.count === 1
            ? `warning: a message claiming to be from ${sanitize(event.from)}${
              event.seq === undefined ? "" : ` (seq ${event.seq})`
            } failed authentication and was not shown`
            : `warning: ${event.count} more messages claiming to be from ${sanitize(event.from)} failed ` +
              `authentication in the last ${Math.round(event.intervalMs / 1000)} s and were not shown`,
        );
      case "outbox":
        return this.#onOutbox(event.item);
      case "status":
        return err(sanitize(event.text));
      case "offline":
        if (event.attempt === 1) err(`connection lost (${sanitize(event.reason)}); reconnecting…`);
        return;
      case "reconnected":
        return err(`reconnected: ${event.missed} missed messages fetched, ${event.resent} resent`);
      case "presence":
      case "nick":
        return; // scripts read messages; presence would only be noise on stderr
      case "closed":
        err(`aeschat client: ${sanitize(event.error.message)}`);
        return this.reportUnstored();
    }
  };

  #onOutbox(item: OutboxItem): void {
    const line = this.#lines.get(item.id);
    if (!line || (item.state !== "acked" && item.state !== "failed")) return;
    this.#lines.delete(item.id);
    if (item.state === "acked") {
      this.#stored++;
      return;
    }
    this.#failed++;
    this.#io.err(`error: line ${line.n} not stored: ${sanitize(item.reason ?? "")}`);
  }

  /** Names on stderr every line said that the server has not stored. */
  reportUnstored(): void {
    if (this.#lines.size === 0) return;
    this.#io.err(`${this.#lines.size} line${this.#lines.size === 1 ? " was" : "s were"} not stored:`);
    for (const { n, text } of this.#lines.values()) this.#io.err(`  line ${n}: ${sanitize(text)}`);
  }

  /**
   * Says every line of the input, in order, then waits until each is stored (or given up).
   *
   * @param session a session that has joined its room
   * @param input the lines
   * @returns how many lines were stored and not stored
   * @throws {SessionError} when the session closes before everything is stored
   */
  async say(session: Session, input: ReadableStream<Uint8Array>): Promise<ScriptResult> {
    let n = 0;
    let rest = "";
    const sayLine = async (line: string) => {
      n++;
      const text = line.endsWith("\r") ? line.slice(0, -1) : line;
      if (text.trim() === "") return;
      if (session.unsent >= WINDOW) await session.whenPendingAtMost(WINDOW / 2);
      try {
        this.#lines.set(session.say(text).id, { n, text });
      } catch (err) {
        if (!(err instanceof SendError)) throw err;
        this.#refused++;
        this.#io.err(`error: line ${n} not sent: ${err.message}`);
      }
    };
    for await (const chunk of input.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let at: number;
      while ((at = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, at);
        rest = rest.slice(at + 1);
        await sayLine(line);
      }
    }
    if (rest !== "") await sayLine(rest);
    await session.drain();
    return { stored: this.#stored, unstored: this.#refused + this.#failed + this.#lines.size };
  }
}
