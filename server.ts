/**
 * aeschat server: relays and stores end-to-end encrypted messages it cannot read.
 *
 * @module
 */
if (import.meta.main) {
  console.log("usage: aeschat-server [options]   (see README.md)");
}
