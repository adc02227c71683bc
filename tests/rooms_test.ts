/**
 * Specification of lib/client/rooms.ts `checkChallenge`: what a challenge must pass before anything is derived or
 * proved (the room asked for, well-formed parameters, the pin, the floor), and lib/client/handshake.ts `isLoopback`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { JoinError } from "../lib/client/errors.ts";
import { isLoopback } from "../lib/client/handshake.ts";
import { checkChallenge, pinDifferences } from "../lib/client/rooms.ts";
import type { ServerMessageOf } from "../lib/protocol.ts";

const PIN = {
  name: "Ops",
  salt: new Uint8Array(16).fill(1),
  iterations: 600_000,
  accessPub: new Uint8Array(32).fill(2),
  epoch: 0,
};

function challenge(change: Record<string, unknown> = {}): ServerMessageOf<"challenge"> {
  return {
    type: "challenge",
    room: "Ops",
    nonce: new Uint8Array(32).fill(3).toBase64(),
    salt: PIN.salt.toBase64(),
    iterations: PIN.iterations,
    access_pub: PIN.accessPub.toBase64(),
    epoch: 0,
    ...change,
  } as ServerMessageOf<"challenge">;
}

function refusal(fn: () => unknown): JoinError {
  try {
    fn();
  } catch (err) {
    if (err instanceof JoinError) return err;
    throw err;
  }
  throw new Error("not refused");
}

Deno.test("a challenge equal to the pin passes, under the canonical name, whatever spelling was asked", () => {
  const checked = checkChallenge(challenge(), { asked: "OPS", pin: PIN, minIterations: 600_000 });
  assert.equal(checked.room, "Ops");
  assert.deepEqual(checked.existing, { salt: PIN.salt, iterations: 600_000, accessPub: PIN.accessPub, epoch: 0 });
  assert.equal(checked.nonce.length, 32);
});

Deno.test("a challenge for another room, or malformed, is refused as a bad reply", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ room: "finance" }, /answered for another room/],
    [{ nonce: "AAAA" }, /nonce is not 32 bytes/],
    [{ salt: new Uint8Array(15).toBase64() }, /salt is not 16 bytes/],
    [{ access_pub: undefined }, /access_pub is not a 32-byte key/],
    [{ iterations: 99_999 }, /iterations must be an integer from 100000/],
    [{ iterations: 10_000_001 }, /iterations/],
    [{ epoch: -1 }, /epoch is out of range/],
    [{ epoch: 2 ** 32 }, /epoch is out of range/],
  ];
  for (const [change, message] of cases) {
    const err = refusal(() => checkChallenge(challenge(change), { asked: "ops", minIterations: 100_000 }));
    assert.equal(err.code, "bad_reply", JSON.stringify(change));
    assert.match(err.message, message);
  }
});

Deno.test("a challenge that differs from the pin is 'changed', naming each difference; a pinned room that looks new too", () => {
  const err = refusal(() =>
    checkChallenge(challenge({ salt: new Uint8Array(16).toBase64(), iterations: 100_000, epoch: 3 }), {
      asked: "ops",
      pin: PIN,
      minIterations: 100_000,
    })
  );
  assert.equal(err.code, "changed");
  assert.match(err.message, /its salt, iteration count \(600000 → 100000\), epoch \(0 → 3\) changed/);
  const looksNew = refusal(() =>
    checkChallenge({ type: "challenge", room: "Ops", nonce: challenge().nonce }, {
      asked: "ops",
      pin: PIN,
      minIterations: 1,
    })
  );
  assert.equal(looksNew.code, "changed");
  assert.match(looksNew.message, /now says it does not exist/);
  assert.deepEqual(pinDifferences(PIN, { ...PIN, accessPub: new Uint8Array(32) }), ["access key"]);
});

Deno.test("the floor applies to a room seen for the first time only; a room with no salt is a creation", () => {
  const weak = refusal(() =>
    checkChallenge(challenge({ iterations: 200_000 }), { asked: "ops", minIterations: 600_000 })
  );
  assert.equal(weak.code, "weak");
  assert.match(weak.message, /--min-iterations 200000/);
  const pinned = { ...PIN, iterations: 200_000 };
  assert.ok(checkChallenge(challenge({ iterations: 200_000 }), { asked: "ops", pin: pinned, minIterations: 600_000 }));
  const create = checkChallenge({ type: "challenge", room: "new", nonce: challenge().nonce }, {
    asked: "new",
    minIterations: 600_000,
  });
  assert.equal(create.existing, undefined);
});

Deno.test("isLoopback: localhost, 127.0.0.0/8 and ::1 only", () => {
  for (const host of ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1", "[::1]"]) {
    assert.ok(isLoopback(host), host);
  }
  for (const host of ["10.0.0.1", "chat.example", "127.0.0.1.example", "::2", "0.0.0.0", "localhost.example"]) {
    assert.ok(!isLoopback(host), host);
  }
});
