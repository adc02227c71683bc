/**
 * aeschat client: holds the room keys, encrypts and decrypts.
 *
 * @module
 */
if (import.meta.main) {
  console.log("usage: aeschat-client [options]   (see README.md)");
}
