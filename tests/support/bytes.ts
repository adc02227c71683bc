/**
 * Byte helpers for tests: the library's own.
 *
 * @module
 */

export { concat } from "../../lib/bytes.ts";
