/**
 * A fake terminal for the screen's tests and bench:client: an input that delivers reads as a terminal would, and an
 * output that records (or drops) what is written.
 *
 * @module
 */

import { EventEmitter } from "node:events";
import type { TerminalOutput } from "../../lib/client/screen.ts";

/** Keyboard input: each {@link FakeInput.type} is one read. */
export class FakeInput extends EventEmitter {
  /** Raw mode, as readline sets it. */
  isRaw = false;
  /** readline turns raw mode on and off. */
  setRawMode(mode: boolean): this {
    this.isRaw = mode;
    return this;
  }
  /** Nothing to resume. */
  resume(): this {
    return this;
  }
  /** Nothing to pause. */
  pause(): this {
    return this;
  }
  /**
   * Delivers one read.
   *
   * @param text the keys, as text or bytes
   */
  type(text: string | Uint8Array): void {
    this.emit("data", typeof text === "string" ? new TextEncoder().encode(text) : text);
  }
}

/**
 * A 120 x 40 terminal output.
 *
 * @param writes receives every write (default: dropped)
 * @returns the output
 */
export function fakeOutput(writes?: string[]): TerminalOutput {
  return {
    write: (text: string) => writes?.push(text),
    columns: 120,
    rows: 40,
    isTTY: true,
    on: () => {},
    removeListener: () => {},
  };
}
