/**
 * Room passphrases on the client: where they come from (environment or file; prompting belongs to the terminal),
 * when one is too weak to create a room with, and strong random ones on request.
 *
 * @module
 */

/** Passphrases shorter than this many characters get a warning and a confirmation before a room is created. */
export const WEAK_PASSPHRASE_CHARS = 12;

/** The environment variable a passphrase may come from. */
export const PASSPHRASE_ENV = "AESCHAT_PASSPHRASE";

/** Crockford's base32 alphabet in lower case: no i, l, o or u to misread. */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
/** 24 characters of 5 bits each: 120 bits of entropy. */
const GENERATED_CHARS = 24;

/** Raised when a passphrase cannot be obtained; the message is one line for the user. */
export class PassphraseError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "PassphraseError";
  }
}

/**
 * Whether a passphrase is too short to create a room with without a warning.
 *
 * @example
 * ```ts
 * isWeakPassphrase("hunter2"); // true
 * isWeakPassphrase("correct horse battery staple"); // false
 * ```
 * @param passphrase the candidate
 * @returns true when shorter than {@link WEAK_PASSPHRASE_CHARS} characters (code points, after NFC)
 */
export function isWeakPassphrase(passphrase: string): boolean {
  return [...passphrase.normalize("NFC")].length < WEAK_PASSPHRASE_CHARS;
}

/**
 * A strong random passphrase: 24 base32 characters (120 bits) in groups of four, easy to read out and type.
 *
 * @example
 * ```ts
 * generatePassphrase(); // "7k2m-q9xd-…" (29 characters)
 * ```
 * @returns the passphrase
 */
export function generatePassphrase(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(GENERATED_CHARS));
  // 256 is a multiple of 32, so taking each byte modulo 32 is uniform.
  const chars = [...bytes].map((b) => ALPHABET[b % ALPHABET.length]);
  const groups = [];
  for (let i = 0; i < chars.length; i += 4) groups.push(chars.slice(i, i + 4).join(""));
  bytes.fill(0);
  return groups.join("-");
}

/**
 * The passphrase given without a prompt: the first line of --passphrase-file when that flag is given (the explicit
 * flag wins), or else AESCHAT_PASSPHRASE. A file that other users can read gets a warning.
 *
 * @example
 * ```ts
 * await presetPassphrase({ env: Deno.env.get("AESCHAT_PASSPHRASE") }); // the variable's value, or undefined
 * ```
 * @param options.env the value of AESCHAT_PASSPHRASE, if set
 * @param options.file the --passphrase-file path, if given
 * @param options.warn receives a warning line (default: none)
 * @returns the passphrase, or undefined when neither is given
 * @throws {PassphraseError} when the file cannot be read or its first line is empty
 */
export async function presetPassphrase(
  options: { env?: string; file?: string; warn?: (line: string) => void },
): Promise<string | undefined> {
  if (options.file === undefined) return options.env === "" ? undefined : options.env;
  let text: string;
  try {
    text = await Deno.readTextFile(options.file);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "no such file"
      : err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (err as Error).message.split("\n")[0];
    throw new PassphraseError(`cannot read --passphrase-file ${options.file}: ${why}`);
  }
  const mode = (await Deno.stat(options.file).catch(() => undefined))?.mode;
  // Windows has no such bits (mode is null there).
  if (typeof mode === "number" && (mode & 0o044) !== 0) {
    options.warn?.(
      `warning: --passphrase-file ${options.file} can be read by other users (mode ${
        (mode & 0o777).toString(8)
      }); chmod 600 it`,
    );
  }
  const line = text.split(/\r?\n/, 1)[0];
  if (line === "") throw new PassphraseError(`--passphrase-file ${options.file}: the first line is empty`);
  return line;
}
