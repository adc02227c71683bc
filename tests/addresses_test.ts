/**
 * The key a client's address counts under for the per-address limits, and --exempt-addresses: every spelling of one
 * address gives one key, an IPv6 /64 is one key, and no input makes them throw.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AddressListError, ExemptAddresses, hostOf, isLoopback, limitKeyOf } from "../lib/server/addresses.ts";

/** Asserts that every spelling gives the key. */
function assertKey(key: string, spellings: string[]): void {
  for (const spelling of spellings) assert.equal(limitKeyOf(spelling), key, spelling);
}

Deno.test("limitKeyOf keeps an IPv4 address as it is", () => {
  assertKey("192.0.2.7", ["192.0.2.7"]);
  assertKey("0.0.0.0", ["0.0.0.0"]);
  assertKey("255.255.255.255", ["255.255.255.255"]);
  assert.notEqual(limitKeyOf("192.0.2.7"), limitKeyOf("192.0.2.8"), "IPv4 addresses are not grouped");
});

Deno.test("limitKeyOf counts an IPv4-mapped IPv6 address as its IPv4 address, in any spelling", () => {
  assertKey("192.0.2.7", [
    "::ffff:192.0.2.7",
    "::FFFF:192.0.2.7",
    "0:0:0:0:0:ffff:192.0.2.7",
    "0000:0000:0000:0000:0000:FFFF:192.0.2.7",
    "::ffff:c000:207",
    "::ffff:C000:0207",
    "[::ffff:192.0.2.7]",
    "::ffff:192.0.2.7%eth0",
  ]);
  assertKey("127.0.0.1", ["::ffff:127.0.0.1", "::ffff:7f00:1"]);
});

Deno.test("limitKeyOf counts an IPv6 address under its /64, in any spelling", () => {
  assertKey("2001:db8:1:2::/64", [
    "2001:db8:1:2::1",
    "2001:db8:1:2::2",
    "2001:db8:1:2:ffff:ffff:ffff:ffff",
    "2001:DB8:1:2:0:0:0:1",
    "2001:0db8:0001:0002:0000:0000:0000:0001",
    "2001:db8:1:2:0::1",
    "2001:db8:1:2::",
    "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
    "2001:db8:1:2:aaaa:bbbb:192.0.2.7",
    "2001:db8:1:2::192.0.2.7",
    "2001:db8:1:2::1%eth0",
    "2001:db8:1:2::1%25",
    "[2001:db8:1:2::1]",
  ]);
  assertKey("2001:db8:1:3::/64", ["2001:db8:1:3::1"]);
  assertKey("2001:db8::/64", ["2001:db8::", "2001:db8::1", "2001:db8:0:0:1::1", "2001:db8:0000:0000:ffff::"]);
  assertKey("2001:0:0:1::/64", ["2001:0:0:1::5", "2001::1:0:0:0:5"]);
  assertKey("::/64", ["::", "::1", "0:0:0:0:0:0:0:1", "::0.0.0.1"]);
  assertKey("fe80::/64", ["fe80::1", "FE80::1%eth0", "fe80::1%2", "fe80:0:0:0:abcd::1%lo"]);
  assertKey("1:2:3:4::/64", ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6::8", "1:2:3:4::8"]);
  assertKey("0:1:2:3::/64", ["::1:2:3:4:5:6:7", "0:1:2:3:4:5:6:7"]);
});

Deno.test("limitKeyOf agrees with the URL parser's canonical IPv6 on random addresses in several spellings", () => {
  const canonical = (text: string) => new URL(`http://[${text}]/`).hostname.slice(1, -1);
  for (let n = 0; n < 2000; n++) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    // Runs of zero groups, so that "::" lands anywhere.
    for (let i = 0; i < 8; i++) if (Math.random() < 0.4) bytes.set([0, 0], 2 * i);
    if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) continue;
    const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16));
    const prefix = new Uint8Array(16);
    prefix.set(bytes.subarray(0, 8));
    const prefixGroups = Array.from({ length: 8 }, (_, i) => ((prefix[2 * i] << 8) | prefix[2 * i + 1]).toString(16));
    const key = `${canonical(prefixGroups.join(":"))}/64`;
    const full = groups.join(":");
    const spellings = [
      full,
      canonical(full),
      groups.map((g) => g.padStart(4, "0").toUpperCase()).join(":"),
      `${groups.slice(0, 6).join(":")}:${bytes.subarray(12).join(".")}`,
      `${canonical(full)}%eth${n}`,
      `[${full}]`,
    ];
    assertKey(key, spellings);
  }
});

Deno.test("limitKeyOf never throws, and returns malformed input as its own key", () => {
  const malformed = [
    "",
    " ",
    "localhost",
    "not an address",
    "1.2.3",
    "1.2.3.4.5",
    "1.2.3.256",
    "1.2.3.-4",
    "01.2.3.4",
    "1.2.3.4 ",
    "1..3.4",
    ":",
    ":::",
    "::1::",
    "1::2::3",
    "2001:db8:::1",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7::8",
    "12345::",
    "g::1",
    "::ffff:1.2.3",
    "::ffff:1.2.3.4.5",
    "::1.2.3.4:5",
    "1:2:3:4:5:6:7:1.2.3.4",
    "%",
    "%eth0",
    "[",
    "]",
    "[::1",
    "2001:db8:1:2::/64",
    "\u0000",
    "١٢٣.1.1.1",
    "::ffff:１.2.3.4",
    "x".repeat(100_000),
    ":".repeat(10_000),
  ];
  for (const text of malformed) assert.equal(limitKeyOf(text), text, JSON.stringify(text.slice(0, 40)));
});

Deno.test("hostOf gives the host of a remote address, which limitKeyOf turns into its key", () => {
  assert.equal(hostOf("192.0.2.7:50000"), "192.0.2.7");
  assert.equal(hostOf("[::ffff:10.0.0.1]:443"), "10.0.0.1");
  assert.equal(limitKeyOf(hostOf("[2001:DB8:1:2::99]:443")), "2001:db8:1:2::/64");
});

Deno.test("isLoopback: 127.0.0.0/8 and ::1", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "::1"]) assert.ok(isLoopback(host), host);
  for (const host of ["128.0.0.1", "::2", "::", "2001:db8::1", ""]) assert.ok(!isLoopback(host), host);
});

Deno.test("ExemptAddresses matches the connection's own address in any spelling, never its neighbours", () => {
  const exempt = new ExemptAddresses("loopback, 192.0.2.7, 2001:DB8:1:2::0001, fe80::1%eth0, ::ffff:198.51.100.9");
  for (const host of ["127.0.0.1", "127.8.8.8", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) {
    assert.ok(exempt.has(host), host);
  }
  for (const host of ["192.0.2.7", "::ffff:192.0.2.7", "2001:db8:1:2::1", "2001:0db8:1:2:0:0:0:1", "fe80::1"]) {
    assert.ok(exempt.has(host), host);
  }
  assert.ok(exempt.has("198.51.100.9"));
  // The rest of the exempt address's /64 (or of its IPv4 /24) is not exempt.
  for (const host of ["192.0.2.8", "2001:db8:1:2::2", "2001:db8:1:2:ffff::1", "fe80::2", "", "garbage"]) {
    assert.ok(!exempt.has(host), host);
  }
  const none = new ExemptAddresses("none");
  for (const host of ["127.0.0.1", "::1"]) assert.ok(!none.has(host), host);
});

Deno.test("ExemptAddresses refuses a network, a name or garbage with one line that says what an entry may be", () => {
  for (const entry of ["10.0.0.0/8", "2001:db8:1:2::/64", "localhost", "1.2.3", "2001:db8:::1", "", "loopback,none"]) {
    assert.throws(() => new ExemptAddresses(entry), (err: unknown) => {
      assert.ok(err instanceof AddressListError, String(err));
      assert.match(err.message, /^--exempt-addresses: ".*" is not an IP address, loopback or none/);
      assert.ok(!err.message.includes("\n"));
      return true;
    }, entry);
  }
  assert.throws(() => new ExemptAddresses("2001:db8:1:2::/64"), /one address each: a network .* cannot be exempted/);
});
