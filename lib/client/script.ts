/**
 * Script mode: every stdin line is sent to the room; received messages (history first) go to stdout one per line,
 * as text or JSON; status and errors go to stderr only. At EOF it waits until the server has stored every message
 * it sent.
 *
 * @module
 */

import { formatJson, formatMessage, sanitize } from "./render.ts";
import { SendError, type Session, type SessionEvent } from "./session.ts";

/** Where script mode reads and writes. */
export interface ScriptIo {
  /** Lines to send. */
  input: ReadableStream<Uint8Array>;
  /** Machine-readable output: one message per line. */
  out: (line: string) => void;
  /** Human-readable status and errors. */
  err: (line: string) => void;
}

/** The outcome of script mode. */
export interface ScriptResult {
  /** Lines sent and acknowledged. */
  sent: number;
  /** Lines that could not be sent (too long, not well-formed). */
  refused: number;
}

/**
 * The event printer of script mode: messages to `out`, everything else to `err`.
 *
 * @example
 * ```ts
 * const onEvent = scriptPrinter({ json: true, out: console.log, err: console.error });
 * ```
 * @param options.json print messages as JSON lines
 * @param options.out the stdout line writer
 * @param options.err the stderr line writer
 * @returns a session event handler
 */
export function scriptPrinter(
  options: { json: boolean; out: (line: string) => void; err: (line: string) => void },
): (event: SessionEvent) => void {
  const { json, out, err } = options;
  const show = (m: Parameters<typeof formatJson>[0]) => out(json ? formatJson(m) : formatMessage(m, { colour: false }));
  return (event) => {
    switch (event.kind) {
      case "message":
        return show(event.message);
      case "older":
        return event.messages.forEach(show);
      case "forged":
        return err(
          `warning: a message claiming to be from ${
            sanitize(event.from)
          } (seq ${event.seq}) failed authentication and was not shown`,
        );
      case "unsent":
        return err(`error: message ${event.id} was not stored: ${sanitize(event.reason)}`);
      case "status":
        return err(sanitize(event.text));
      case "reconnected":
        return err(`reconnected: ${event.missed} missed messages fetched, ${event.resent} resent`);
      case "presence":
      case "nick":
        return; // scripts read messages; presence would only be noise on stderr
      case "closed":
        return err(`aeschat client: ${event.error.message}`);
    }
  };
}

/**
 * Sends every line of the input, then waits for all acknowledgements.
 *
 * @example
 * ```ts
 * await runScript(session, { input: Deno.stdin.readable, out: console.log, err: console.error });
 * ```
 * @param session a session that has joined its room
 * @param io where to read lines and report problems
 * @returns how many lines were sent and refused
 * @throws {SessionError} when the session closes before everything is acknowledged
 */
export async function runScript(session: Session, io: ScriptIo): Promise<ScriptResult> {
  let sent = 0;
  let refused = 0;
  let lineNo = 0;
  const lines = io.input.pipeThrough(new TextDecoderStream());
  let rest = "";
  const sendLine = async (line: string) => {
    lineNo++;
    const text = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (text.trim() === "") return;
    try {
      await session.send(text);
      sent++;
    } catch (err) {
      if (!(err instanceof SendError)) throw err;
      refused++;
      io.err(`error: line ${lineNo} not sent: ${err.message}`);
    }
  };
  for await (const chunk of lines) {
    rest += chunk;
    let at: number;
    while ((at = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, at);
      rest = rest.slice(at + 1);
      await sendLine(line);
    }
  }
  if (rest !== "") await sendLine(rest);
  await session.drain();
  return { sent, refused };
}
