/**
 * The client session's typed errors: why it stopped for good ({@link SessionError}, mapped to an exit code by
 * client.ts), why one request failed while the session carries on ({@link JoinError}), and why a message cannot be
 * sent ({@link SendError}).
 *
 * @module
 */

/**
 * Why the session stopped for good; the client maps it to an exit code. "changed": a pinned key or room parameter
 * changed (the server's key, a room's parameters, a direct recipient's key).
 */
export type CloseKind = "connect" | "denied" | "nick" | "closed" | "changed" | "quit";

/** Raised when the server cannot be used (unreachable, refused, gone for good); `kind` picks the exit code. */
export class SessionError extends Error {
  /** The failure class. */
  readonly kind: CloseKind;
  /** The server's error code, or the client's own reason ("server_key_changed", "room_changed", …). */
  readonly code?: string;
  /**
   * @param kind the failure class
   * @param message one line for the user
   * @param options.code the server's error code
   */
  constructor(kind: CloseKind, message: string, options: { code?: string } = {}) {
    super(message);
    this.name = "SessionError";
    this.kind = kind;
    if (options.code !== undefined) this.code = options.code;
  }
}

/**
 * Raised when a request fails (wrong passphrase, bad room name, cancelled, offline, a room whose parameters changed);
 * the session carries on.
 */
export class JoinError extends Error {
  /**
   * The server's error code, or: "cancelled" (the user gave no passphrase), "offline", "bad_reply" (the server
   * answered something that is not an answer), "changed" (a pinned room parameter or key changed: exit 7),
   * "weak" (iterations below --min-iterations: exit 7), "no_invitation".
   */
  readonly code: string;
  /**
   * @param code the error code
   * @param message one line for the user
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "JoinError";
    this.code = code;
  }
}

/**
 * Raised when a message cannot be sent at all (too long, not in that room, the recipient's key changed); `code`
 * "changed" for a recipient whose key differs from the pin (exit 7 in script mode).
 */
export class SendError extends Error {
  /** "changed" when the recipient's key changed; otherwise undefined. */
  readonly code?: string;
  /**
   * @param message one line for the user
   * @param options.code "changed" for a recipient key change
   */
  constructor(message: string, options: { code?: string } = {}) {
    super(message);
    this.name = "SendError";
    if (options.code !== undefined) this.code = options.code;
  }
}
