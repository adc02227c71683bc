/**
 * Specification of lib/message.ts: a v2 room message opens only with its signature intact and in its room instance;
 * a member holding the room keys cannot make one pass as another's key; v1 envelopes open as unsigned and a v2
 * envelope cannot be relabelled as v1.
 *
 * @module
 */

import assert from "node:assert/strict";
import { deriveRoomKeys, OpenError, sealEnvelope } from "../lib/crypto.ts";
import { generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { openRoomMessage, type RoomContext, sealRoomMessage, SignatureError } from "../lib/message.ts";
import { roomPlaintext, sealRoomText } from "./support/forge.ts";

const keys = await deriveRoomKeys("message test passphrase", { salt: new Uint8Array(16), iterations: 100_000 });
const alice = await importIdentity(generateIdentitySecrets());
const mallory = await importIdentity(generateIdentitySecrets());
const context: RoomContext = {
  serverPub: new Uint8Array(32).fill(7),
  room: "general",
  accessPub: keys.accessPub,
  epoch: 0,
};
const sequence = { device: new Uint8Array(16).fill(1), n: 3, acked: 2, void: [[1, 1]] as [number, number][] };
const content = { type: "text", body: "deploy at noon" };

function seal(overrides: Partial<Parameters<typeof sealRoomMessage>[1]> = {}) {
  return sealRoomMessage(keys, { context, from: "alice", identity: alice, content, sequence, ...overrides });
}

Deno.test("a sealed v2 message opens with its signer, sequence and content", async () => {
  const message = await openRoomMessage(keys, { envelope: await seal(), context });
  assert.equal(message.v, 2);
  assert.equal(message.body, "deploy at noon");
  assert.deepEqual(message.signer?.key, alice.publicKey);
  assert.deepEqual(message.signer?.sequence, sequence);
});

Deno.test("a member with the room keys cannot pass a message as alice's key", async () => {
  // Mallory seals with from = alice: the signature verifies, but with Mallory's key; the caller compares it to the pin.
  const forged = await seal({ identity: mallory });
  const message = await openRoomMessage(keys, { envelope: forged, context });
  assert.deepEqual(message.signer?.key, mallory.publicKey);
  assert.notDeepEqual(message.signer?.key, alice.publicKey);
});

Deno.test("a message whose signed part is altered, removed or from another room instance is refused", async () => {
  const envelope = await seal();
  const opened = await openRoomMessage(keys, { envelope, context });
  // Re-seal the same plaintext with the room keys, changing one signed field at a time (what a member could do).
  const plain = {
    type: opened.type,
    body: opened.body,
    key: alice.publicKey.toBase64(),
    device: sequence.device.toBase64(),
    n: 3,
    acked: 2,
    void: [[1, 1]],
  };
  const sig = await reSign(envelope);
  const variants: Record<string, unknown>[] = [
    { ...plain, sig, body: "deploy now" },
    { ...plain, sig, n: 4 },
    { ...plain, sig, void: [] },
    { ...plain, sig, key: mallory.publicKey.toBase64() },
    { ...plain },
    { ...plain, sig: "AAAA" },
    { ...plain, sig, acked: 3 },
  ];
  for (const plaintext of variants) {
    const resealed = await sealEnvelope(keys, {
      room: "general",
      from: "alice",
      plaintext: plaintext as never,
      id: Uint8Array.fromBase64(envelope.id),
      ts: envelope.ts,
      v: 2,
    });
    await assert.rejects(openRoomMessage(keys, { envelope: resealed, context }), SignatureError);
  }
  for (
    const other of [{ ...context, epoch: 1 }, { ...context, room: "General" }, {
      ...context,
      accessPub: new Uint8Array(32),
    }]
  ) {
    await assert.rejects(openRoomMessage(keys, { envelope, context: other }));
  }
});

async function reSign(envelope: { id: string; ts: number }): Promise<string> {
  // The genuine signature, taken out of the genuine plaintext (a member can decrypt it).
  const raw = await crypto.subtle.decrypt(
    { name: "AES-CBC", iv: Uint8Array.fromBase64((envelope as never as { iv: string }).iv) },
    keys.encKey,
    Uint8Array.fromBase64((envelope as never as { ct: string }).ct),
  );
  return JSON.parse(new TextDecoder().decode(raw)).sig;
}

Deno.test("a v1 envelope opens as unsigned, and a v2 envelope relabelled v1 does not open", async () => {
  const v1 = await sealEnvelope(keys, { room: "general", from: "alice", plaintext: content, v: 1 });
  const message = await openRoomMessage(keys, { envelope: v1, context });
  assert.equal(message.v, 1);
  assert.equal(message.signer, undefined);
  const v2 = await seal();
  await assert.rejects(openRoomMessage(keys, { envelope: { ...v2, v: 1 }, context }), OpenError);
});

Deno.test("sealRoomMessage refuses bad types, oversized bodies and inconsistent sequence values", async () => {
  await assert.rejects(seal({ content: { type: "Text", body: "x" } }), RangeError);
  await assert.rejects(seal({ content: { type: "text", body: "x".repeat(16385) } }), RangeError);
  for (
    const bad of [{ n: 0 }, { acked: 3 }, { void: [[3, 3]] }, { void: [[1, 1], [1, 1]] }, { device: new Uint8Array(8) }]
  ) {
    await assert.rejects(seal({ sequence: { ...sequence, ...bad } as never }), RangeError);
  }
});

// ---- review: a signature must cover exactly what is shown --------------------------------------------------------

Deno.test("a body with a lone surrogate is refused: it would sign the same bytes as one with U+FFFD", async () => {
  // lp32() encodes with TextEncoder, which writes a lone surrogate as U+FFFD: "pay \ud800" and "pay \ufffd" share a
  // signature. A member re-seals alice's genuine message with the surrogate in place of U+FFFD.
  const envelope = await seal({ content: { type: "text", body: "pay \ufffd now" } });
  const plain = await roomPlaintext(keys, envelope);
  const forged = await sealRoomText(keys, {
    room: "general",
    from: "alice",
    id: envelope.id,
    ts: envelope.ts,
    text: JSON.stringify({ ...plain, body: "pay \ud800 now" }),
  });
  await assert.rejects(openRoomMessage(keys, { envelope: forged, context }));
  // The same for an unsigned v1 envelope: a body must be well-formed whatever the version.
  const v1 = await sealRoomText(keys, {
    room: "general",
    from: "alice",
    id: envelope.id,
    ts: envelope.ts,
    v: 1,
    text: JSON.stringify({ type: "text", body: "\udc00" }),
  });
  await assert.rejects(openRoomMessage(keys, { envelope: v1, context }), OpenError);
});

Deno.test("a plaintext with a repeated member is refused: parsers differ on which one wins", async () => {
  const envelope = await seal();
  const signed = JSON.stringify(await roomPlaintext(keys, envelope));
  const header = { room: "general", from: "alice", id: envelope.id, ts: envelope.ts };
  // alice's own signed plaintext, with a body that a first-wins parser would show in front of the signed one.
  const twice = `{"body":"send the dump to mallory",${signed.slice(1)}`;
  await assert.rejects(
    openRoomMessage(keys, { envelope: await sealRoomText(keys, { ...header, text: twice }), context }),
    OpenError,
  );
  // The same, spelled with an escape: the names are equal once unescaped.
  const escaped = `{"b\\u006fdy":"send the dump to mallory",${signed.slice(1)}`;
  await assert.rejects(
    openRoomMessage(keys, { envelope: await sealRoomText(keys, { ...header, text: escaped }), context }),
    OpenError,
  );
  // The hand-made sealing is right: the signed plaintext alone opens.
  const plain = await sealRoomText(keys, { ...header, text: signed });
  assert.equal((await openRoomMessage(keys, { envelope: plain, context })).body, "deploy at noon");
});
