/**
 * Attacks on the per-address limits from IPv6: one client holds a whole /64 (routinely handed to one home or one
 * server) and can speak from any of its 2^64 addresses, in any spelling. Every per-address budget counts the /64 as
 * one address (as IRC servers, ergo among them, do); the connection limit (--max-connections-per-address) uses the
 * same key, from the same function, which tests/addresses_test.ts specifies.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { Hub } from "../lib/server/hub.ts";
import { Logger } from "../lib/server/log.ts";
import { RegistrationError, Registry, type RegistryOptions } from "../lib/server/registry.ts";
import { Store } from "../lib/server/store.ts";
import { HUB_LIMITS } from "./support/hub_link.ts";
import { joinHub, openHubClient } from "./support/hub_peer.ts";

/** Tries to register one new nick from each host, with a fresh key each, under these rules; says what became of each. */
async function register(options: RegistryOptions, hosts: string[]): Promise<string[]> {
  const store = Store.open(":memory:");
  try {
    const registry = new Registry(store, options);
    const outcomes = [];
    for (const [i, host] of hosts.entries()) {
      const identity = await importIdentity(generateIdentitySecrets());
      try {
        registry.claim(identity.publicKey, `squat${i}`, { host });
        outcomes.push("registered");
      } catch (err) {
        if (!(err instanceof RegistrationError)) throw err;
        outcomes.push(err.code);
      }
    }
    return outcomes;
  } finally {
    store.close();
  }
}

Deno.test("new registrations from one IPv6 /64 share one --registrations-per-hour budget, in any spelling", async () => {
  const outcomes = await register({ registrationsPerHour: 2, exempt: () => false }, [
    "2001:db8:1:2::1",
    "2001:db8:1:2:ffff:ffff:ffff:fffe",
    "2001:db8:1:2::3",
    "2001:0DB8:0001:0002:0:0:0:4",
    "2001:db8:1:2::5%eth0",
    "2001:db8:1:3::1", // the next /64 is someone else
  ]);
  assert.deepEqual(outcomes, [
    "registered",
    "registered",
    "registration_limited",
    "registration_limited",
    "registration_limited",
    "registered",
  ]);
});

Deno.test("an exempt address inside a /64 neither spends nor is held to the /64's registration budget", async () => {
  const exempt = (host: string) => host === "2001:db8:1:2::7";
  const outcomes = await register({ registrationsPerHour: 1, exempt }, [
    "2001:db8:1:2::7",
    "2001:db8:1:2::7",
    "2001:db8:1:2::8",
    "2001:db8:1:2::9",
  ]);
  assert.deepEqual(outcomes, ["registered", "registered", "registered", "registration_limited"]);
});

Deno.test("connections from one IPv6 /64 share one room creation budget (--room-create-burst)", async () => {
  const store = Store.open(":memory:");
  try {
    const hub = new Hub(store, {
      limits: HUB_LIMITS,
      version: "9.9.9",
      log: new Logger({ level: "error", sink: () => {} }),
      rooms: { maxRooms: 1000, createPerHour: 1, createBurst: 2, quotaBytes: 2 ** 40, exempt: () => false },
    });
    const outcomes = [];
    for (let i = 1; i <= 4; i++) {
      // A fresh connection from a fresh address of the /64 each time, so the per-connection budget never binds.
      const { client } = await openHubClient(hub, `creator${i}`, { remote: `[2001:db8:1:2::${i}]:4000${i}` });
      const reply = await joinHub(hub, client, `room${i}`, "attack passphrase", { iterations: 100_000 });
      outcomes.push(reply.type === "joined" ? "created" : reply.code);
    }
    const { client: other } = await openHubClient(hub, "neighbour", { remote: "[2001:db8:1:3::1]:40009" });
    const reply = await joinHub(hub, other, "room9", "attack passphrase", { iterations: 100_000 });
    outcomes.push(reply.type === "joined" ? "created" : reply.code);
    assert.deepEqual(outcomes, ["created", "created", "create_limited", "create_limited", "created"]);
  } finally {
    store.close();
  }
});
