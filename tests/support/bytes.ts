/**
 * Byte helpers for tests.
 *
 * @module
 */

/**
 * Joins byte arrays into one new array.
 *
 * @param parts the arrays, in order
 * @returns a fresh array holding all their bytes
 */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
