/**
 * The false alarms of issue 12 item 5, checked absent: what honest senders and servers do must raise no replay,
 * order, withheld or key-change mark: a second device of the same identity, a send the server refused, a nick
 * change, messages removed by retention, history paging; and a peer who rotated their key is accepted without a
 * warning when the old key signed the change. Against the v2 server double, playing an honest server.
 *
 * @module
 */

import assert from "node:assert/strict";
import { exportIdentity, importIdentityFile } from "../lib/client/home.ts";
import { fingerprint } from "../lib/identity.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, settle, type TestClient, TestHomes } from "./support/session_clients.ts";

const PASSPHRASE = "honest test passphrase 0c44";
const hooks = passphraseHooks(PASSPHRASE);

/** No event that would alarm the user, and every message shown plain. */
function assertNoAlarm(client: TestClient): void {
  for (const kind of ["keyChanged", "registry", "withheld", "forged"] as const) {
    assert.deepEqual(client.of(kind), [], `no ${kind} event`);
  }
  for (const m of [...client.messages(), ...client.directs()]) {
    assert.deepEqual(m.marks, [], `no mark on ${m.text}: ${m.marks}`);
    assert.notEqual(m.trust, "changed", m.text);
  }
}

Deno.test("a second device of one identity: both send, the other members see every line plain", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const laptop = await homes.connect(server.dial, "alice");
  const phoneDir = await homes.dir();
  importIdentityFile(phoneDir, exportIdentity(laptop.home.dir));
  const phone = await homes.connect(server.dial, "alice", { dir: phoneDir });
  const bob = await homes.connect(server.dial, "bob");
  try {
    for (const c of [laptop, phone, bob]) await c.session.join("general", hooks);
    for (let i = 0; i < 5; i++) {
      laptop.session.say(`laptop ${i}`);
      phone.session.say(`phone ${i}`);
    }
    await laptop.session.drain();
    await phone.session.drain();
    await poll(() => bob.messages().length === 10, "bob's ten lines");
    await poll(() => phone.messages().length === 5 && laptop.messages().length === 5, "each device sees the other");
    await settle();
    for (const c of [bob, phone, laptop]) assertNoAlarm(c);
    const alice = await fingerprint(laptop.home.identity.publicKey);
    assert.ok(bob.messages().every((m) => m.from === "alice" && m.fingerprint === alice && m.trust === "pinned"));
  } finally {
    for (const c of [laptop, phone, bob]) await c.close();
    await homes.cleanup();
  }
});

Deno.test("a send refused with storage_failed is sealed again under a new number: no alarm for the others", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice", { retry: { delayMs: 10, retries: 5 } });
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    let refused = 0;
    // The store fails for the 2nd and 5th sends once each.
    let sends = 0;
    server.incoming = (msg, link) => {
      if (msg.type !== "send") return;
      sends++;
      if (sends !== 2 && sends !== 5) return;
      refused++;
      link.reply({ type: "error", code: "storage_failed", message: "disk full", id: msg.envelope.id });
      return false;
    };
    for (let i = 0; i < 8; i++) alice.session.say(`line ${i}`);
    await alice.session.drain();
    assert.equal(refused, 2);
    await poll(() => bob.messages().length === 8, "all eight lines");
    // Later lines show that earlier numbers were settled; the void ones are listed, so nothing looks withheld.
    alice.session.say("last");
    await poll(() => bob.messages().length === 9, "the last line");
    await settle();
    assertNoAlarm(bob);
    assert.deepEqual(
      bob.messages().map((m) => m.text).sort(),
      [...Array(8).keys()].map((i) => `line ${i}`).concat("last").sort(),
    );
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("a nick change in the middle of a conversation: the new nick is the same key, no alarm", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    alice.session.say("as alice");
    const change = alice.session.changeNick("ally");
    alice.session.say("as ally");
    await change;
    alice.session.say("still ally");
    await poll(() => bob.messages().length === 3, "three lines");
    await settle();
    assertNoAlarm(bob);
    assert.deepEqual(bob.messages().map((m) => `${m.from}: ${m.text}`), [
      "alice: as alice",
      "ally: as ally",
      "ally: still ally",
    ]);
    assert.ok(bob.of("presence").some((p) => p.event === "nick" && p.nick === "ally" && p.old === "alice"));
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("messages removed by retention while a member was away: a notice, no withheld warning", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    alice.session.say("before");
    await poll(() => bob.messages().length === 1, "the first line");
    server.down = true;
    for (const link of server.open) if (link.nick === "bob") link.drop();
    for (let i = 0; i < 6; i++) alice.session.say(`away ${i}`);
    await alice.session.drain();
    // Retention removes the first four lines said while bob was away.
    const room = server.rooms.get("general")!;
    const removed = room.messages.slice(1, 5);
    room.messages = room.messages.filter((m) => !removed.includes(m));
    room.pruned_through = removed.at(-1)!.seq;
    server.down = false;
    await poll(() => bob.of("reconnected").length === 1, "bob back");
    alice.session.say("after");
    await poll(() => bob.messages().length === 4, "the kept lines");
    await settle();
    assertNoAlarm(bob);
    assert.deepEqual(bob.messages().map((m) => m.text), ["before", "away 4", "away 5", "after"]);
    assert.equal(bob.of("pruned").length, 1);
    assert.equal(bob.of("pruned")[0].through, room.pruned_through);
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("paging back through history shows older lines without marks, and does not upset the order checks", async () => {
  const server = await EvilServer.start();
  server.limits = { ...server.limits, history: 5 };
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  try {
    await alice.session.join("general", hooks);
    for (let i = 0; i < 20; i++) alice.session.say(`old ${i}`);
    await alice.session.drain();
    const bob = await homes.connect(server.dial, "bob");
    try {
      await bob.session.join("general", hooks);
      await poll(() => bob.messages().length === 5, "the last five as history");
      assert.deepEqual(await bob.session.older(5), { shown: 5, more: true });
      assert.deepEqual(await bob.session.older(100), { shown: 10, more: false });
      alice.session.say("live");
      await poll(() => bob.messages().length === 21, "the live line");
      await settle();
      assertNoAlarm(bob);
      const older = bob.of("older").flatMap((e) => e.messages.map((m) => m.text));
      assert.deepEqual(older, [...Array(15).keys()].slice(10).concat([...Array(10).keys()]).map((i) => `old ${i}`));
    } finally {
      await bob.close();
    }
  } finally {
    await alice.close();
    await homes.cleanup();
  }
});

Deno.test("a peer who rotated their key is accepted without a key-change mark; the notice says the old key signed it", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const aliceDir = await homes.dir();
  const alice = await homes.connect(server.dial, "alice", { dir: aliceDir });
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    alice.session.say("old key");
    await poll(() => bob.messages().length === 1, "the first line");
    const { next } = await alice.home.rotate();
    await alice.close();
    const rotated = await homes.connect(server.dial, "alice", { dir: aliceDir });
    try {
      assert.equal(await fingerprint(rotated.home.identity.publicKey), await fingerprint(next));
      await rotated.session.join("general", hooks);
      rotated.session.say("new key");
      await poll(() => bob.messages().length === 2, "the second line");
      await settle();
      assertNoAlarm(bob);
      assert.equal(bob.messages()[1].trust, "pinned");
      assert.deepEqual(bob.of("rotated").map((e) => e.nick), ["alice"]);
      assert.equal(bob.of("rotated")[0].fingerprint, await fingerprint(next));
    } finally {
      await rotated.close();
    }
  } finally {
    await bob.close();
    await homes.cleanup();
  }
});
