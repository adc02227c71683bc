/**
 * Script mode: every stdin line is said in the first room (or sent as a direct message to `--to`), in order;
 * received messages of every joined room, direct messages and invitations (history first, unless `--no-history`) go
 * to stdout one per line, as text or JSON; status and warnings go to stderr only. At EOF it waits until the server
 * has stored every line, and every line that was not stored is named on stderr.
 *
 * @module
 */

import type { OutboxItem } from "./outbox.ts";
import {
  displayNick,
  formatDirectJson,
  formatInvitationJson,
  formatJson,
  formatMessage,
  lineTime,
  noticeOf,
  sanitize,
} from "./render.ts";
import { SendError, type Session, type SessionEvent } from "./session.ts";

/** Lines said but not yet stored before script mode stops reading stdin for a while (bounds its memory). */
const WINDOW = 1_000;

/** Where script mode writes, and what it prints. */
export interface ScriptIo {
  /** Print messages as JSON lines. */
  json: boolean;
  /** Print only messages that arrive after joining (no history). */
  noHistory?: boolean;
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
  /** Whether a line was refused because its recipient's key changed (exit 7). */
  changed: boolean;
}

/** Where stdin lines go: a room, or a person. */
export type ScriptTarget = { room: string } | { to: string };

/**
 * One run of script mode: its event printer (give {@link ScriptRun.onEvent} to the session), and the loop that says
 * every stdin line.
 *
 * @example
 * ```ts
 * const run = new ScriptRun({ json: false, out: console.log, err: console.error });
 * const session = await Session.connect(dial, { nick: "ci", home, address, onEvent: run.onEvent });
 * await session.join("ops", hooks);
 * const result = await run.say(session, Deno.stdin.readable, { room: "ops" });
 * ```
 */
export class ScriptRun {
  #io: ScriptIo;
  /** The stdin line number and text of each message said, by id, until it is stored. */
  #lines = new Map<string, { n: number; text: string }>();
  #refused = 0;
  #failed = 0;
  #stored = 0;
  #changed = false;

  /** @param io output format and where to write */
  constructor(io: ScriptIo) {
    this.#io = io;
  }

  /** Prints a session event: messages to stdout, everything else to stderr. */
  onEvent = (event: SessionEvent): void => {
    const { out, err, json } = this.#io;
    const history = (h: boolean) => h && this.#io.noHistory;
    switch (event.kind) {
      case "message":
        if (history(event.message.history)) return;
        return out(json ? formatJson(event.message) : formatMessage(event.message, { colour: false, now: Date.now() }));
      case "older":
        for (const m of event.messages) {
          out(json ? formatJson(m) : formatMessage(m, { colour: false, now: Date.now() }));
        }
        return;
      case "direct":
        if (history(event.message.history)) return;
        return out(
          json ? formatDirectJson(event.message) : formatMessage(event.message, { colour: false, now: Date.now() }),
        );
      case "invitation": {
        const i = event.invitation;
        if (history(i.history)) return;
        return out(
          json
            ? formatInvitationJson(i)
            : `${lineTime(i.ts)} ${i.trust === "changed" ? "[key changed] " : ""}${displayNick(i.from)} invites ${
              displayNick(i.to)
            } to #${sanitize(i.room)} (accept: deno task client accept ${sanitize(i.room)})`,
        );
      }
      case "outbox":
        return this.#onOutbox(event.item);
      case "offline":
        if (event.attempt === 1) err(`connection lost (${sanitize(event.reason)}); reconnecting…`);
        return;
      case "reconnected":
        return err(`reconnected: ${event.missed} missed messages fetched, ${event.resent} resent`);
      case "closed":
        err(`aeschat client: ${sanitize(event.error.message)}`);
        return this.reportUnstored();
      default: {
        const notice = noticeOf(event);
        if (notice) err(sanitize(notice.text));
      }
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
    if (item.code === "changed") this.#changed = true;
    this.#io.err(`error: line ${line.n} not stored: ${sanitize(item.reason ?? "")}`);
  }

  /** Whether a line was refused because its recipient's key changed. */
  get changed(): boolean {
    return this.#changed;
  }

  /** Names on stderr every line said that the server has not stored. */
  reportUnstored(): void {
    if (this.#lines.size === 0) return;
    this.#io.err(`${this.#lines.size} line${this.#lines.size === 1 ? " was" : "s were"} not stored:`);
    for (const { n, text } of this.#lines.values()) this.#io.err(`  line ${n}: ${sanitize(text)}`);
  }

  /**
   * Says every line of the input, in order, to the target, then waits until each is stored (or given up).
   *
   * @param session a session that has joined its room
   * @param input the lines
   * @param target the room, or the recipient of direct messages
   * @returns how many lines were stored and not stored
   * @throws {SessionError} when the session closes before everything is stored
   */
  async say(session: Session, input: ReadableStream<Uint8Array>, target: ScriptTarget): Promise<ScriptResult> {
    let n = 0;
    let rest = "";
    const sayLine = async (line: string) => {
      n++;
      const text = line.endsWith("\r") ? line.slice(0, -1) : line;
      if (text.trim() === "") return;
      if (session.unsent >= WINDOW) await session.whenPendingAtMost(WINDOW / 2);
      try {
        const item = "to" in target ? session.msg(target.to, text) : session.say(text, { room: target.room });
        this.#lines.set(item.id, { n, text });
      } catch (err) {
        if (!(err instanceof SendError)) throw err;
        if (err.code === "changed") this.#changed = true;
        this.#refused++;
        this.#io.err(`error: line ${n} not sent: ${sanitize(err.message)}`);
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
    return { stored: this.#stored, unstored: this.#refused + this.#failed + this.#lines.size, changed: this.#changed };
  }
}
