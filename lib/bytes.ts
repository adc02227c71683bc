/**
 * The byte-string building blocks of every signed, MAC'd and key-derivation input (PROTOCOL.md's notation): `a || b`,
 * `lp(s)`, `lp32(s)` and big-endian integers.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Joins byte arrays into one new array (`a || b || …`).
 *
 * @example
 * ```ts
 * concat([new Uint8Array([1]), new Uint8Array([2, 3])]); // Uint8Array [1, 2, 3]
 * ```
 * @param parts the arrays, in order
 * @returns a fresh array holding all their bytes
 */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * `lp(s)`: the UTF-8 bytes of a string after their length as a 2-byte big-endian integer.
 *
 * @example
 * ```ts
 * lp("general").toHex(); // "000767656e6572616c"
 * ```
 * @param text the string (at most 65535 bytes of UTF-8)
 * @returns u16be(length) || UTF-8(text)
 */
export function lp(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  if (bytes.length > 0xffff) throw new RangeError(`lp: ${bytes.length} bytes do not fit a 2-byte length`);
  return concat([u16be(bytes.length), bytes]);
}

/**
 * `lp32(s)`: the UTF-8 bytes of a string after their length as a 4-byte big-endian integer (for message bodies).
 *
 * @example
 * ```ts
 * lp32("hi").toHex(); // "000000026869"
 * ```
 * @param text the string
 * @returns u32be(length) || UTF-8(text)
 */
export function lp32(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  return concat([u32be(bytes.length), bytes]);
}

/**
 * `u16be(n)`: a 2-byte big-endian unsigned integer.
 *
 * @example
 * ```ts
 * u16be(258).toHex(); // "0102"
 * ```
 * @param n 0..65535
 * @returns 2 bytes
 */
export function u16be(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setUint16(0, n);
  return out;
}

/**
 * `u32be(n)`: a 4-byte big-endian unsigned integer.
 *
 * @example
 * ```ts
 * u32be(1).toHex(); // "00000001"
 * ```
 * @param n 0..2^32-1
 * @returns 4 bytes
 */
export function u32be(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

/**
 * `u64be(n)`: an 8-byte big-endian unsigned integer.
 *
 * @example
 * ```ts
 * u64be(1700000000000).toHex(); // "0000018bcfe56800"
 * ```
 * @param n 0..2^53-1
 * @returns 8 bytes
 */
export function u64be(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/**
 * Compares two byte arrays for equality. Not constant time: for public values only (keys, ids), never secrets.
 *
 * @example
 * ```ts
 * sameBytes(new Uint8Array([1]), new Uint8Array([1])); // true
 * ```
 * @param a bytes
 * @param b bytes
 * @returns whether they are equal
 */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
