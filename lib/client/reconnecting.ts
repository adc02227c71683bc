/**
 * Coming back after the connection was lost: tries again with growing delays (doubled after every failure, each with
 * ±50% jitter), each try a new connection and then the rejoin, until one succeeds, the policy gives up, or the
 * server refuses in a way that retrying cannot fix. Part of the session; it knows only the steps it is handed.
 *
 * @module
 */

import { SessionError } from "./errors.ts";
import type { SessionEvent } from "./events.ts";

/** The first reconnect delay. */
const RECONNECT_FIRST_DELAY_MS = 250;
/** The largest reconnect delay. */
const RECONNECT_MAX_DELAY_MS = 30_000;

/** How the session reconnects. */
export interface ReconnectPolicy {
  /** First delay (default 250 ms); doubled after every failure. */
  firstDelayMs: number;
  /** Largest delay (default 30 s). */
  maxDelayMs: number;
  /** Give up after this long (script mode's --reconnect-for); undefined: never, as long as the program runs. */
  giveUpAfterMs?: number;
}

/** What reconnecting needs from the session. */
export interface ReconnectSteps {
  /** Whether the session is still offline (false once it is closed, or back). */
  offline(): boolean;
  /** Dials, checks the server and logs in. */
  open(): Promise<void>;
  /** After a successful open: rejoins, catches up, says it is back. */
  rejoin(): Promise<void>;
  /** Closes the new connection after a failed rejoin. */
  drop(): void;
  /** Receives the "offline" events. */
  onEvent(event: SessionEvent): void;
}

/**
 * The reconnecting of one session.
 *
 * @example
 * ```ts
 * const reconnecting = new Reconnecting({ giveUpAfterMs: 60_000 }, { offline, open, rejoin, drop, onEvent });
 * await reconnecting.run("the connection was lost"); // throws SessionError when it gives up
 * ```
 */
export class Reconnecting {
  #policy: ReconnectPolicy;
  #steps: ReconnectSteps;
  /** Ends the wait between attempts early (on close). */
  #wake: (() => void) | undefined;

  /**
   * @param policy the delays and when to give up (defaults: 250 ms doubling to 30 s, never giving up)
   * @param steps what each attempt does
   */
  constructor(policy: Partial<ReconnectPolicy> | undefined, steps: ReconnectSteps) {
    this.#policy = {
      firstDelayMs: policy?.firstDelayMs ?? RECONNECT_FIRST_DELAY_MS,
      maxDelayMs: policy?.maxDelayMs ?? RECONNECT_MAX_DELAY_MS,
      giveUpAfterMs: policy?.giveUpAfterMs,
    };
    this.#steps = steps;
  }

  /**
   * Retries with growing delays until connected and caught up, the policy gives up, or a refusal is final. Returns
   * early when the session stops being offline (closed) during a wait.
   *
   * @param firstReason why the connection was lost
   * @throws {SessionError} "closed" when the policy gives up; the refusal itself when it is final (a changed server
   *   key, a nick the server will never take, a protocol it does not speak, or any SessionError of the rejoin)
   */
  async run(firstReason: string): Promise<void> {
    const started = performance.now();
    const policy = this.#policy;
    const steps = this.#steps;
    let delay = policy.firstDelayMs;
    let reason = firstReason;
    for (let attempt = 1; steps.offline(); attempt++) {
      let wait = delay * (0.5 + Math.random());
      if (policy.giveUpAfterMs !== undefined) {
        const left = policy.giveUpAfterMs - (performance.now() - started);
        if (left <= 0) {
          throw new SessionError(
            "closed",
            `the connection was lost and did not come back within ${seconds(policy.giveUpAfterMs)} (${reason})`,
          );
        }
        // The last try comes at the deadline rather than never.
        wait = Math.min(wait, left);
      }
      steps.onEvent({ kind: "offline", reason, retryInMs: Math.round(wait), attempt });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
      if (!steps.offline()) return;
      delay = Math.min(delay * 2, policy.maxDelayMs);
      try {
        await steps.open();
      } catch (err) {
        // A changed server key, a nick the server will never take, a protocol it does not speak: retrying cannot
        // fix that.
        if (
          err instanceof SessionError &&
          (err.kind === "changed" || err.kind === "nick" || err.code === "version_unsupported")
        ) {
          throw err;
        }
        reason = (err as Error).message;
        continue;
      }
      try {
        await steps.rejoin();
        return;
      } catch (err) {
        if (err instanceof SessionError) throw err;
        reason = (err as Error).message;
        steps.drop();
      }
    }
  }

  /** Ends the current wait between attempts at once (the session is closing). */
  wake(): void {
    this.#wake?.();
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
