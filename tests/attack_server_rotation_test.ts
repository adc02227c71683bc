/**
 * Attacks on the server's identity rotation, as the people who will break it: a thief who holds a user's old key and
 * is connected when the user rotates away from it, and one person merging the nicks of several keys into one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateIdentitySecrets, type Identity, importIdentity, signRotation } from "../lib/identity.ts";
import { removeServer, startServer } from "./support/programs.ts";
import { closeAll, type Msg, WireClient } from "./support/wire.ts";

const PASSPHRASE = "rotation attack passphrase";

function freshIdentity(): Promise<Identity> {
  return importIdentity(generateIdentitySecrets());
}

/** Waits until a client's connection has ended, or the deadline passes; returns whether it ended. */
async function endsWithin(client: WireClient, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    client.ended.then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms)),
  ]);
  clearTimeout(timer);
  return ended;
}

Deno.test("a rotation cuts off the old key's connections: a thief holding the old key no longer speaks as the nick", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  try {
    const stolen = await freshIdentity();
    const next = await freshIdentity();
    // Rose's old key has leaked: mallory logs in with it as rose and sits in #general beside alice.
    const thief = await WireClient.connect(server.port);
    clients.push(thief);
    await thief.hello("rose", { identity: stolen });
    assert.equal((await thief.join("general", PASSPHRASE)).type, "joined");
    const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
    clients.push(alice);
    // Rose rotates to a new key: the server moves her nick to it.
    const owner = await WireClient.connect(server.port);
    clients.push(owner);
    const rotation = await signRotation(stolen, { newKey: next.publicKey, ts: Date.now() });
    const welcome = await owner.hello("rose", { identity: next, rotation });
    assert.equal(welcome.nick, "rose");
    // The old key no longer holds the nick: the thief's message as rose is neither acked nor relayed, and its
    // connection is told why and cut.
    const forged = await thief.seal("send the prod DB dump to mallory@evil.example");
    const outcome = await thief.send({ type: "send", envelope: forged })
      .then(() => thief.awaitAck(forged.id))
      .then((r) => r.type === "ack" ? "ack" : r.code, () => "closed");
    assert.notEqual(outcome, "ack", "the old key's connection still speaks as rose after the rotation");
    assert.ok(await endsWithin(thief, 10_000), "the old key's connection is still open after the rotation");
    const why = thief.inbox.find((m): m is Msg<"error"> => m.type === "error");
    assert.equal(why?.code, "nick_registered");
    assert.match(server.program.stderr, /key_rotated .*nick=rose/);
    // Rose's new key speaks normally; alice saw that message and not the thief's.
    assert.equal((await owner.join("general", PASSPHRASE)).type, "joined");
    const real = await owner.seal("it is really me");
    await owner.send({ type: "send", envelope: real });
    assert.equal((await owner.awaitAck(real.id)).type, "ack");
    const heard = await alice.next("message", { where: (m) => m.envelope.id === real.id });
    assert.equal(heard.envelope.from, "rose");
    assert.deepEqual(alice.inbox.filter((m) => m.type === "message" && m.envelope.id === forged.id), []);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("a rotation cannot merge the nicks of two keys past --max-nicks-per-key", async () => {
  const server = await startServer({ args: ["--max-nicks-per-key", "2"] });
  const clients: WireClient[] = [];
  try {
    const first = await freshIdentity();
    const second = await freshIdentity();
    const logIn = async (nick: string, options: Parameters<WireClient["login"]>[1]) => {
      const c = await WireClient.connect(server.port);
      clients.push(c);
      const reply = await c.login(nick, options);
      return reply.type === "welcome" ? "welcome" : reply.code;
    };
    // Each key holds its two nicks, the most allowed.
    for (const [nick, identity] of [["m1", first], ["m2", first], ["m3", second], ["m4", second]] as const) {
      assert.equal(await logIn(nick, { identity }), "welcome");
    }
    assert.equal(await logIn("m5", { identity: second }), "too_many_nicks");
    // The first key's statement naming the second: the second would hold four nicks.
    const rotation = await signRotation(first, { newKey: second.publicKey, ts: Date.now() });
    assert.equal(await logIn("m3", { identity: second, rotation }), "too_many_nicks");
    // Refused as a whole: the first key keeps its nicks.
    assert.equal(await logIn("m1", { identity: first }), "welcome");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
