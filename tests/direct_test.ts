/**
 * Specification of lib/direct.ts: a direct message opens only for its recipient (and the sender's copy only for the
 * sender); a server that redirects it, rewrites a bound field, or substitutes a key gets nothing opened; invitations
 * must be self-consistent.
 *
 * @module
 */

import assert from "node:assert/strict";
import { deriveRoomKeys, OpenError, signEd25519 } from "../lib/crypto.ts";
import {
  DirectError,
  directSignatureInput,
  encodeInvitation,
  openDirect,
  parseDirectEnvelope,
  parseInvitation,
  sealDirect,
  serializeDirectEnvelope,
} from "../lib/direct.ts";
import { generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { sealDirectText } from "./support/forge.ts";

const serverPub = new Uint8Array(32).fill(9);
const alice = await importIdentity(generateIdentitySecrets());
const bob = await importIdentity(generateIdentitySecrets());
const carol = await importIdentity(generateIdentitySecrets());
const toBob = { nick: "bob", key: bob.publicKey, kx: bob.kxPublic };

function send(body = "the prod password is in the vault") {
  return sealDirect(alice, { serverPub, from: "alice", to: toBob, content: { type: "text", body } });
}

Deno.test("bob opens alice's message, alice opens her copy, and both see the same signed content", async () => {
  const { envelope, copy } = await send();
  const atBob = await openDirect(bob, { envelope, serverPub });
  const atAlice = await openDirect(alice, { envelope: copy, serverPub });
  assert.equal(atBob.body, "the prod password is in the vault");
  assert.deepEqual([atBob.copy, atAlice.copy], [false, true]);
  assert.deepEqual(atBob.fromKey, alice.publicKey);
  assert.equal(atBob.id, atAlice.id);
  assert.deepEqual(parseDirectEnvelope(JSON.parse(serializeDirectEnvelope(envelope))), envelope);
});

Deno.test("a direct message redirected to carol, or the copy delivered to bob, does not open", async () => {
  const { envelope, copy } = await send();
  await assert.rejects(openDirect(carol, { envelope, serverPub }), OpenError);
  await assert.rejects(openDirect(carol, { envelope: { ...envelope, tokey: carol.publicKey.toBase64() }, serverPub }));
  await assert.rejects(openDirect(bob, { envelope: copy, serverPub }), OpenError);
});

Deno.test("rewriting any bound field, or another server's key, makes it fail authentication", async () => {
  const { envelope } = await send();
  const rewrites: Record<string, unknown>[] = [
    { from: "mallory" },
    { to: "bobby" },
    { ts: envelope.ts + 1 },
    { id: new Uint8Array(16).toBase64() },
    { key: carol.publicKey.toBase64() },
    { kx: carol.kxPublic.toBase64() },
    { epk: carol.kxPublic.toBase64() },
    { nonce: new Uint8Array(12).toBase64() },
  ];
  for (const change of rewrites) {
    await assert.rejects(openDirect(bob, { envelope: { ...envelope, ...change }, serverPub }), OpenError);
  }
  await assert.rejects(openDirect(bob, { envelope, serverPub: new Uint8Array(32) }), OpenError);
});

Deno.test("a message sealed to a key the server substituted opens for the substitute, never for bob", async () => {
  // The server hands alice carol's kx key as bob's: bob cannot open it, and carol still fails (tokey is bob).
  const { envelope } = await sealDirect(alice, {
    serverPub,
    from: "alice",
    to: { nick: "bob", key: bob.publicKey, kx: carol.kxPublic },
    content: { type: "text", body: "hi" },
  });
  await assert.rejects(openDirect(bob, { envelope, serverPub }), OpenError);
  await assert.rejects(openDirect(carol, { envelope, serverPub }), OpenError);
});

Deno.test("an invitation must carry a master that derives its stated access key", async () => {
  const keys = await deriveRoomKeys("invite test passphrase", { salt: new Uint8Array(16), iterations: 100_000 });
  const invitation = {
    room: "ops",
    serverPub,
    master: keys.master,
    salt: new Uint8Array(16),
    iterations: 100_000,
    accessPub: keys.accessPub,
    epoch: 0,
  };
  assert.deepEqual(await parseInvitation(encodeInvitation(invitation)), invitation);
  const lying = encodeInvitation({ ...invitation, accessPub: new Uint8Array(32).fill(1) });
  await assert.rejects(parseInvitation(lying), DirectError);
  await assert.rejects(parseInvitation(encodeInvitation({ ...invitation, iterations: 1000 })), DirectError);
  await assert.rejects(parseInvitation("{"), DirectError);
});

Deno.test("sealDirect refuses a body over the limit and a message to oneself", async () => {
  await assert.rejects(send("x".repeat(16385)), DirectError);
  await assert.rejects(
    sealDirect(alice, {
      serverPub,
      from: "alice",
      to: { nick: "alice", key: alice.publicKey, kx: alice.kxPublic },
      content: { type: "text", body: "me" },
    }),
    DirectError,
  );
});

// ---- review: what a direct message shows is exactly what was signed, and nothing that can drive a terminal --------

Deno.test("a direct message with a lone surrogate in its body, or a type outside [a-z][a-z0-9_]*, is refused", async () => {
  const id = crypto.getRandomValues(new Uint8Array(16));
  const ts = 1_700_000_000_000;
  const header = { serverPub, from: "alice", to: "bob", id, ts, fromKey: alice.publicKey, toKey: bob.publicKey };
  for (const content of [{ type: "text", body: "pay \ud800" }, { type: "text\u001b[2J", body: "hi" }]) {
    // The sender signs it (lp32 writes the surrogate as U+FFFD) and seals it by hand.
    const sig = await signEd25519(alice.signKey, directSignatureInput(header, content));
    const envelope = await sealDirectText(alice, {
      serverPub,
      from: "alice",
      to: toBob,
      id,
      ts,
      text: JSON.stringify({ ...content, sig: sig.toBase64() }),
    });
    await assert.rejects(openDirect(bob, { envelope, serverPub }), OpenError, JSON.stringify(content));
  }
  // The hand-made sealing is right: the same with a plain body opens.
  const plain = { type: "text", body: "hi" };
  const sig = await signEd25519(alice.signKey, directSignatureInput(header, plain));
  const text = JSON.stringify({ ...plain, sig: sig.toBase64() });
  const envelope = await sealDirectText(alice, { serverPub, from: "alice", to: toBob, id, ts, text });
  assert.equal((await openDirect(bob, { envelope, serverPub })).body, "hi");
});

Deno.test("an invitation's room name follows the room name rules (no control characters for a terminal to obey)", async () => {
  const keys = await deriveRoomKeys("invite test passphrase", { salt: new Uint8Array(16), iterations: 100_000 });
  const invitation = {
    room: "ops",
    serverPub,
    master: keys.master,
    salt: new Uint8Array(16),
    iterations: 100_000,
    accessPub: keys.accessPub,
    epoch: 0,
  };
  for (const room of ["ops\u001b]0;pwned\u0007", "ops room", "ops\u034f"]) {
    await assert.rejects(parseInvitation(encodeInvitation({ ...invitation, room })), DirectError, JSON.stringify(room));
  }
});

Deno.test("sealDirect to a low-order key-agreement key fails with a DirectError, not a bare WebCrypto error", async () => {
  // A user may publish such a key with a valid kx_sig (signed by itself): the sender must get a typed error.
  for (const kx of [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, k) => (k === 0 ? 1 : 0))]) {
    await assert.rejects(
      sealDirect(alice, { serverPub, from: "alice", to: { ...toBob, kx }, content: { type: "text", body: "hi" } }),
      DirectError,
    );
  }
});

Deno.test("a direct plaintext or an invitation with a repeated member is refused", async () => {
  const id = crypto.getRandomValues(new Uint8Array(16));
  const ts = 1_700_000_000_000;
  const header = { serverPub, from: "alice", to: "bob", id, ts, fromKey: alice.publicKey, toKey: bob.publicKey };
  const content = { type: "text", body: "hi" };
  const sig = (await signEd25519(alice.signKey, directSignatureInput(header, content))).toBase64();
  const twice = `{"type":"text","body":"pay mallory","body":"hi","sig":"${sig}"}`;
  const envelope = await sealDirectText(alice, { serverPub, from: "alice", to: toBob, id, ts, text: twice });
  await assert.rejects(openDirect(bob, { envelope, serverPub }), OpenError);
  const keys = await deriveRoomKeys("invite test passphrase", { salt: new Uint8Array(16), iterations: 100_000 });
  const body = encodeInvitation({
    room: "ops",
    serverPub,
    master: keys.master,
    salt: new Uint8Array(16),
    iterations: 100_000,
    accessPub: keys.accessPub,
    epoch: 0,
  });
  assert.equal((await parseInvitation(body)).room, "ops");
  await assert.rejects(parseInvitation(`{"room":"finance",${body.slice(1)}`), DirectError);
});
