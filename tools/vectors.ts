/**
 * Writes tests/fixtures/v2_example.json: the protocol v2 worked example of PROTOCOL.md, computed with lib/ from fixed
 * keys, nonces and ids. tests/vectors_test.ts checks lib/ against it and recomputes it independently with node:crypto.
 * Run: `deno run -A tools/vectors.ts > tests/fixtures/v2_example.json`.
 *
 * @module
 */

import { sealDirect } from "../lib/direct.ts";
import { deriveRoomKeys, importEd25519Seed, joinInput, signEd25519 } from "../lib/crypto.ts";
import {
  fingerprint,
  importIdentity,
  kxInput,
  loginInput,
  rotationInput,
  safetyNumber,
  serverInput,
} from "../lib/identity.ts";
import { roomMessageInput, sealRoomMessage } from "../lib/message.ts";
import { serializeEnvelope } from "../lib/envelope.ts";

/** Bytes start, start+1, … (mod 256). */
export function run(start: number, length: number): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length }, (_, i) => (start + i) & 0xff);
}

/** The fixed inputs of the worked example. */
export const INPUTS = {
  serverSeed: run(0x40, 32),
  aliceSeed: run(0x60, 32),
  aliceKx: Uint8Array.fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
  bobSeed: run(0x80, 32),
  bobKx: Uint8Array.fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
  aliceNextSeed: run(0x90, 32),
  clientNonce: run(0xa0, 32),
  serverNonce: run(0xc0, 32),
  passphrase: "correct horse battery staple",
  salt: run(0x00, 16),
  iterations: 100000,
  room: "general",
  nick: "alice",
  joinNonce: run(0x20, 32),
  messageId: run(0x00, 16),
  ts: 1700000000000,
  iv: run(0x10, 16),
  device: run(0xe0, 16),
  body: "hello",
  rotationTs: 1700000002000,
  dmId: run(0xf0, 16),
  dmTs: 1700000001000,
  dmBody: "hi bob",
  ephemeral: new Uint8Array(32).fill(0x11),
  copyEphemeral: new Uint8Array(32).fill(0x22),
  dmNonce: run(0x30, 12),
  copyNonce: run(0x40, 12),
};

/**
 * Computes the worked example with lib/.
 *
 * @returns every intermediate value, hex or text
 */
export async function computeExample(): Promise<Record<string, unknown>> {
  const i = INPUTS;
  const server = await importEd25519Seed(i.serverSeed);
  const alice = await importIdentity({ signSeed: i.aliceSeed, kxSecret: i.aliceKx });
  const bob = await importIdentity({ signSeed: i.bobSeed, kxSecret: i.bobKx });
  const aliceNext = await importEd25519Seed(i.aliceNextSeed);
  const serverSig = await signEd25519(
    server.privateKey,
    serverInput({ clientNonce: i.clientNonce, serverNonce: i.serverNonce }),
  );
  const login = loginInput({
    serverPub: server.publicKey,
    serverNonce: i.serverNonce,
    clientNonce: i.clientNonce,
    identityPub: alice.publicKey,
    nick: i.nick,
  });
  const loginSig = await signEd25519(alice.signKey, login);
  const rotation = rotationInput({ oldKey: alice.publicKey, newKey: aliceNext.publicKey, ts: i.rotationTs });
  const keys = await deriveRoomKeys(i.passphrase, { salt: i.salt, iterations: i.iterations });
  const bind = { serverPub: server.publicKey, identityPub: alice.publicKey };
  const join = joinInput(i.joinNonce, { room: i.room, nick: i.nick, bind });
  const context = { serverPub: server.publicKey, room: i.room, accessPub: keys.accessPub, epoch: 0 };
  const sequence = { device: i.device, n: 1, acked: 0, void: [] as [number, number][] };
  const content = { type: "text", body: i.body };
  const msgInput = roomMessageInput(context, {
    from: i.nick,
    id: i.messageId,
    ts: i.ts,
    content,
    identityPub: alice.publicKey,
    sequence,
  });
  const envelope = await sealRoomMessage(keys, {
    context,
    from: i.nick,
    identity: alice,
    content,
    sequence,
    id: i.messageId,
    ts: i.ts,
    iv: i.iv,
  });
  const dm = await sealDirect(alice, {
    serverPub: server.publicKey,
    from: "alice",
    to: { nick: "bob", key: bob.publicKey, kx: bob.kxPublic },
    content: { type: "text", body: i.dmBody },
    id: i.dmId,
    ts: i.dmTs,
    fixed: { ephemeral: i.ephemeral, copyEphemeral: i.copyEphemeral, nonce: i.dmNonce, copyNonce: i.copyNonce },
  });
  return {
    server_pub: server.publicKey.toHex(),
    server_fingerprint: await fingerprint(server.publicKey),
    server_input: serverInput({ clientNonce: i.clientNonce, serverNonce: i.serverNonce }).toHex(),
    server_signature: serverSig.toHex(),
    alice_pub: alice.publicKey.toHex(),
    alice_kx_pub: alice.kxPublic.toHex(),
    alice_kx_input: kxInput(alice.publicKey, alice.kxPublic).toHex(),
    alice_kx_signature: alice.kxSignature.toHex(),
    alice_fingerprint: await fingerprint(alice.publicKey),
    bob_pub: bob.publicKey.toHex(),
    bob_kx_pub: bob.kxPublic.toHex(),
    bob_fingerprint: await fingerprint(bob.publicKey),
    safety_number: await safetyNumber(alice.publicKey, bob.publicKey),
    login_input: login.toHex(),
    login_signature: loginSig.toHex(),
    alice_next_pub: aliceNext.publicKey.toHex(),
    rotation_input: rotation.toHex(),
    rotation_signature: (await signEd25519(alice.signKey, rotation)).toHex(),
    access_pub: keys.accessPub.toHex(),
    join_input: join.toHex(),
    join_proof: (await signEd25519(keys.accessKey, join)).toHex(),
    message_input: msgInput.toHex(),
    message_signature: (await signEd25519(alice.signKey, msgInput)).toHex(),
    envelope: serializeEnvelope(envelope),
    dm_envelope: JSON.stringify(dm.envelope),
    dm_copy: JSON.stringify(dm.copy),
  };
}

if (import.meta.main) {
  const example = await computeExample();
  console.log(
    JSON.stringify({ note: "protocol v2 worked example; see PROTOCOL.md and tools/vectors.ts", ...example }, null, 2),
  );
}
