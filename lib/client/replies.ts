/**
 * Waiting for replies: a request's caller waits for the first incoming message that passes its test, which is then
 * taken before normal handling. Generic over the message type, so it knows nothing of any protocol version.
 *
 * @module
 */

interface Waiter<M> {
  test: (message: M) => boolean;
  resolve: (message: M) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The waiters of one session.
 *
 * @example
 * ```ts
 * const replies = new Replies<ServerMessage>({ timeoutMs: 30_000, timedOut: () => link.close() });
 * const welcome = replies.expect((m) => m.type === "welcome");
 * // for every incoming message:
 * if (!replies.offer(message)) handle(message);
 * ```
 */
export class Replies<M> {
  #waiters: Waiter<M>[] = [];
  #options: { timeoutMs: number; timedOut: () => void };

  /**
   * @param options.timeoutMs how long a waiter waits
   * @param options.timedOut called when one gave up (the connection is then taken for dead)
   */
  constructor(options: { timeoutMs: number; timedOut: () => void }) {
    this.#options = options;
  }

  /**
   * Waits for the next message that passes `test`.
   *
   * @param test which message is the reply
   * @returns the reply
   * @throws {Error} when none comes in time, or {@link Replies.failAll} is called
   */
  expect(test: (message: M) => boolean): Promise<M> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter<M> = {
        test,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new Error("the server did not answer in time"));
          this.#options.timedOut();
        }, this.#options.timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /**
   * Gives an incoming message to the first waiter that wants it.
   *
   * @param message the message
   * @returns whether a waiter took it
   */
  offer(message: M): boolean {
    const i = this.#waiters.findIndex((w) => w.test(message));
    if (i < 0) return false;
    const [waiter] = this.#waiters.splice(i, 1);
    clearTimeout(waiter.timer);
    waiter.resolve(message);
    return true;
  }

  /**
   * Rejects every waiter (the connection is gone).
   *
   * @param reason the error message
   */
  failAll(reason: string): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(reason));
    }
  }
}
