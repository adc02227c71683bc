/**
 * Micro-benchmarks of the v1 wire cryptography: what a client pays per message sent and received, what it pays
 * once per room for key derivation, and what the server pays per join. Run with `deno task bench:crypto`.
 *
 * @module
 */

import {
  DEFAULT_ITERATIONS,
  deriveRoomKeys,
  MIN_ITERATIONS,
  NONCE_BYTES,
  openEnvelope,
  sealEnvelope,
  signJoinProof,
  verifyJoinProof,
} from "../lib/crypto.ts";

const salt = Uint8Array.fromHex("000102030405060708090a0b0c0d0e0f");
// The iteration count does not change seal/open cost, so these keys are derived at the cheapest count.
const keys = await deriveRoomKeys("correct horse battery staple", { salt, iterations: MIN_ITERATIONS });
const plaintext = { type: "text", body: "x".repeat(100) };
const envelope = await sealEnvelope(keys, { room: "general", from: "alice", plaintext });
const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
const proof = await signJoinProof(keys, { nonce, room: "general", nick: "alice" });

Deno.bench("sealEnvelope, 100-byte body", { group: "message" }, async () => {
  await sealEnvelope(keys, { room: "general", from: "alice", plaintext });
});

Deno.bench("openEnvelope, 100-byte body", { group: "message" }, async () => {
  await openEnvelope(keys, { envelope, room: "general", from: "alice" });
});

Deno.bench("signJoinProof", { group: "join" }, async () => {
  await signJoinProof(keys, { nonce, room: "general", nick: "alice" });
});

Deno.bench("verifyJoinProof (server, per join)", { group: "join" }, async () => {
  await verifyJoinProof(keys.accessPub, { proof, nonce, room: "general", nick: "alice" });
});

Deno.bench(`deriveRoomKeys, ${DEFAULT_ITERATIONS} iterations (default)`, { n: 20, warmup: 2 }, async () => {
  await deriveRoomKeys("correct horse battery staple", { salt, iterations: DEFAULT_ITERATIONS });
});
