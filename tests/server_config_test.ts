/**
 * The server's flags: the defaults the issue and PROTOCOL.md promise, every bad value refused with a UsageError
 * naming the flag, and --help listing every flag with its default.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseRetention, parseServerFlags, SERVER_FLAGS, serverHelp, UsageError } from "../lib/server/config.ts";

function assertUsage(args: string[], message: RegExp): void {
  assert.throws(() => parseServerFlags(args), (err: unknown) => {
    assert.ok(err instanceof UsageError, `${args.join(" ")}: expected a UsageError, got ${err}`);
    assert.match(err.message, message, args.join(" "));
    assert.ok(!err.message.includes("\n"), `${args.join(" ")}: the message is one line`);
    return true;
  });
}

Deno.test("parseServerFlags with no flags gives the documented defaults", () => {
  assert.deepEqual(parseServerFlags([]), {
    host: "127.0.0.1",
    port: 5000,
    db: "./aeschat.db",
    history: 50,
    maxFrame: 65536,
    maxConnections: 1000,
    maxConnectionsPerAddress: 100,
    exemptAddresses: "loopback",
    rate: 20,
    burst: 40,
    sendQueue: 1024 * 1024,
    sendGrace: 30,
    maxQueued: 128 * 1024 * 1024,
    minReadRate: 65536,
    maxRooms: 1000,
    maxRoomsPerConnection: 20,
    roomCreateRate: 30,
    roomCreateBurst: 5,
    roomQuota: 256 * 1024 * 1024,
    retention: "all",
    maxNicksPerKey: 5,
    registrationsPerHour: 10,
    nickExpiry: 365,
    registration: "open",
    directInbox: 10_000,
    handshakeTimeout: 10,
    idleTimeout: 120,
    synchronous: "full",
    tlsCert: undefined,
    tlsKey: undefined,
    logLevel: "info",
    logFormat: "text",
    help: false,
    version: false,
  });
});

Deno.test("parseServerFlags reads every flag, in both --flag value and --flag=value forms", () => {
  const config = parseServerFlags([
    "--host",
    "0.0.0.0",
    "--port=0",
    "--db",
    "/tmp/x.db",
    "--history",
    "500",
    "--max-frame",
    "1024",
    "--max-connections=1",
    "--max-connections-per-address",
    "7",
    "--exempt-addresses",
    "loopback,192.0.2.7,2001:db8::1",
    "--rate",
    "0.5",
    "--burst",
    "1",
    "--send-queue",
    "65536",
    "--send-grace=0.5",
    "--max-queued",
    "262144",
    "--min-read-rate",
    "1000",
    "--max-rooms",
    "7",
    "--max-rooms-per-connection",
    "3",
    "--room-create-rate",
    "0.5",
    "--room-create-burst",
    "2",
    "--room-quota=65536",
    "--retention",
    "30d",
    "--max-nicks-per-key",
    "3",
    "--registrations-per-hour=0",
    "--nick-expiry",
    "0.5",
    "--registration",
    "closed",
    "--direct-inbox",
    "7",
    "--handshake-timeout",
    "0.05",
    "--idle-timeout",
    "86400",
    "--synchronous",
    "normal",
    "--tls-cert",
    "c.pem",
    "--tls-key",
    "k.pem",
    "--log-level",
    "debug",
    "--log-format",
    "json",
    "--help",
    "--version",
  ]);
  assert.deepEqual(config, {
    host: "0.0.0.0",
    port: 0,
    db: "/tmp/x.db",
    history: 500,
    maxFrame: 1024,
    maxConnections: 1,
    maxConnectionsPerAddress: 7,
    exemptAddresses: "loopback,192.0.2.7,2001:db8::1",
    rate: 0.5,
    burst: 1,
    sendQueue: 65536,
    sendGrace: 0.5,
    maxQueued: 262144,
    minReadRate: 1000,
    maxRooms: 7,
    maxRoomsPerConnection: 3,
    roomCreateRate: 0.5,
    roomCreateBurst: 2,
    roomQuota: 65536,
    retention: "30d",
    maxNicksPerKey: 3,
    registrationsPerHour: 0,
    nickExpiry: 0.5,
    registration: "closed",
    directInbox: 7,
    handshakeTimeout: 0.05,
    idleTimeout: 86400,
    synchronous: "normal",
    tlsCert: "c.pem",
    tlsKey: "k.pem",
    logLevel: "debug",
    logFormat: "json",
    help: true,
    version: true,
  });
  // The last of a repeated flag wins.
  assert.equal(parseServerFlags(["--port", "1", "--port", "2"]).port, 2);
});

Deno.test("parseServerFlags accepts each number flag at both ends of its range and refuses one step beyond", () => {
  const numbers = SERVER_FLAGS.filter((f) => f.kind === "int" || f.kind === "number");
  assert.deepEqual(numbers.map((f) => f.name), [
    "port",
    "history",
    "max-frame",
    "max-connections",
    "max-connections-per-address",
    "rate",
    "burst",
    "send-queue",
    "send-grace",
    "max-queued",
    "min-read-rate",
    "max-rooms",
    "max-rooms-per-connection",
    "room-create-rate",
    "room-create-burst",
    "room-quota",
    "max-nicks-per-key",
    "registrations-per-hour",
    "nick-expiry",
    "direct-inbox",
    "handshake-timeout",
    "idle-timeout",
  ]);
  for (const f of numbers) {
    const key = f.key as keyof ReturnType<typeof parseServerFlags>;
    assert.equal(parseServerFlags([`--${f.name}=${f.min}`])[key], f.min, `--${f.name} ${f.min}`);
    assert.equal(parseServerFlags([`--${f.name}=${f.max}`])[key], f.max, `--${f.name} ${f.max}`);
    const step = f.kind === "int" ? 1 : 0.01;
    for (const bad of [f.min! - step, f.max! + step]) {
      assertUsage([`--${f.name}=${bad}`], new RegExp(`^--${f.name} must be from ${f.min} to ${f.max}, got ${bad}$`));
    }
  }
  assert.equal(parseServerFlags(["--history", "0"]).history, 0, "--history 0 replays nothing");
  assert.equal(parseServerFlags(["--rate", "0"]).rate, 0, "--rate 0 is unlimited");
});

Deno.test("parseServerFlags refuses values that are not numbers, fractions for integers, and empty strings", () => {
  assertUsage(["--port", "abc"], /^--port must be an integer, got abc$/);
  assertUsage(["--port", "80.5"], /^--port must be an integer, got 80\.5$/);
  assertUsage(["--history", ""], /^--history must be an integer/);
  assertUsage(["--max-frame", " "], /^--max-frame must be an integer/);
  assertUsage(["--rate", "fast"], /^--rate must be a number, got fast$/);
  assertUsage(["--rate", "Infinity"], /^--rate must be a number/);
  assertUsage(["--idle-timeout", "NaN"], /^--idle-timeout must be a number/);
  assertUsage(["--db", ""], /^--db must not be empty$/);
  assertUsage(["--host", ""], /^--host must not be empty$/);
});

Deno.test("parseServerFlags refuses a choice outside its list, naming the choices", () => {
  assertUsage(["--log-level", "trace"], /^--log-level must be one of error, warn, info, debug$/);
  assertUsage(["--log-format", "xml"], /^--log-format must be one of text, json$/);
  assertUsage(["--synchronous", "off"], /^--synchronous must be one of full, normal$/);
});

Deno.test("parseServerFlags refuses unknown flags, positional arguments, missing values and half a TLS pair", () => {
  assertUsage(["--nope"], /Unknown option '--nope'/);
  assertUsage(["-p", "5"], /Unknown option '-p'/);
  assertUsage(["serve"], /Unexpected argument 'serve'/);
  assertUsage(["--port"], /--port <value>' argument missing/);
  assertUsage(["--help=yes"], /'--help' does not take an argument/);
  assertUsage(["--tls-cert", "c.pem"], /^--tls-cert and --tls-key go together$/);
  assertUsage(["--tls-key", "k.pem"], /^--tls-cert and --tls-key go together$/);
  assertUsage(["--exempt-addresses", "localhost"], /^--exempt-addresses: "localhost" is not an IP address, loopback/);
  assertUsage(["--exempt-addresses", "loopback,none"], /"none" is not an IP address/);
  assertUsage(["--exempt-addresses", "10.0.0.0/8"], /"10\.0\.0\.0\/8" is not an IP address/);
  for (const bad of ["forever", "0", "-5", "1.5d", "30 d", "12m", "d", "01"]) {
    assertUsage([`--retention=${bad}`], /^--retention must be all, a number of messages, or an age such as 30d or 12h/);
  }
});

Deno.test("--help lists every flag once, with its default, and the exit codes", () => {
  const help = serverHelp("9.8.7");
  assert.match(help, /^aeschat server 9\.8\.7: /);
  const lines = help.split("\n");
  for (const f of SERVER_FLAGS) {
    const matching = lines.filter((l) => l.startsWith(`  --${f.name} `));
    assert.equal(matching.length, 1, `--${f.name} is listed once`);
    assert.ok(matching[0].includes(f.help), `--${f.name} has its help text`);
    if (f.kind !== "boolean" && f.default !== undefined) {
      assert.ok(matching[0].endsWith(`(default ${f.default})`), `--${f.name} shows its default: ${matching[0]}`);
    }
  }
  const expected: Record<string, string> = {
    host: "127.0.0.1",
    port: "5000",
    db: "./aeschat.db",
    history: "50",
    "max-frame": "65536",
    "max-connections": "1000",
    "max-connections-per-address": "100",
    "exempt-addresses": "loopback",
    rate: "20",
    burst: "40",
    "send-queue": "1048576",
    "send-grace": "30",
    "max-queued": "134217728",
    "min-read-rate": "65536",
    "max-rooms": "1000",
    "room-create-rate": "30",
    "room-create-burst": "5",
    "room-quota": "268435456",
    retention: "all",
    "handshake-timeout": "10",
    "idle-timeout": "120",
    "log-level": "info",
  };
  for (const [name, value] of Object.entries(expected)) {
    assert.ok(lines.some((l) => l.startsWith(`  --${name} `) && l.endsWith(`(default ${value})`)), `--${name}`);
  }
  for (const name of ["tls-cert", "tls-key", "help", "version", "log-format", "synchronous"]) {
    assert.ok(lines.some((l) => l.startsWith(`  --${name}`)), `--${name} is listed`);
  }
  assert.match(help, /Exit codes: 0 ok, 1 internal error, 2 bad flag, 3 cannot listen, 4 cannot open the database/);
  assert.match(help, /5 database corrupt or from a newer version, 6 bad TLS certificate or key\./);
});

Deno.test("parseRetention reads all, a count per room, or an age in days or hours", () => {
  assert.deepEqual(parseRetention("all"), { kind: "all" });
  assert.deepEqual(parseRetention("5000"), { kind: "count", count: 5000 });
  assert.deepEqual(parseRetention("30d"), { kind: "age", ageMs: 30 * 86_400_000 });
  assert.deepEqual(parseRetention("12h"), { kind: "age", ageMs: 12 * 3_600_000 });
});
