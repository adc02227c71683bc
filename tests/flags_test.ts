import assert from "node:assert/strict";
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "../lib/flags.ts";
import { CLIENT_FLAGS, clientHelp, NickFlagError, parseClientFlags } from "../lib/client/config.ts";

const TABLE: FlagSpec[] = [
  { name: "port", key: "port", kind: "int", default: 5000, min: 0, max: 65535, help: "TCP port" },
  { name: "rate", key: "rate", kind: "number", default: 20, min: 0, max: 100, help: "rate" },
  { name: "mode", key: "mode", kind: "choice", default: "a", choices: ["a", "b"], help: "mode" },
  { name: "name", key: "name", kind: "string", help: "name" },
  { name: "on", key: "on", kind: "boolean", default: false, help: "switch" },
];

Deno.test("parseFlags fills defaults and reads every kind of value", () => {
  assert.deepEqual(parseFlags(TABLE, []), { port: 5000, rate: 20, mode: "a", name: undefined, on: false });
  assert.equal(parseFlags(TABLE, ["--rate", ".5"]).rate, 0.5);
  assert.throws(() => parseFlags(TABLE, ["--port=-1"]), /--port must be from 0 to 65535, got -1/);
  assert.deepEqual(parseFlags(TABLE, ["--port", "0", "--rate=2.5", "--mode", "b", "--name", "x", "--on"]), {
    port: 0,
    rate: 2.5,
    mode: "b",
    name: "x",
    on: true,
  });
});

Deno.test("parseFlags refuses unknown flags, positionals, bad numbers, ranges, choices and empty strings", () => {
  for (
    const [args, pattern] of [
      [["--nope"], /nope/],
      [["extra"], /extra|positional/i],
      [["--port", "1.5"], /--port must be an integer, got 1.5/],
      [["--port", "x"], /--port must be an integer/],
      [["--port", ""], /--port must be an integer/],
      [["--port", "70000"], /--port must be from 0 to 65535, got 70000/],
      [["--rate", "Infinity"], /--rate must be a number/],
      [["--port", "0x10"], /--port must be an integer, got 0x10/],
      [["--port", "1e3"], /--port must be an integer/],
      [["--port", " 5"], /--port must be an integer/],
      [["--rate", "+5"], /--rate must be a number/],
      [["--rate", "1e2"], /--rate must be a number/],
      [["--mode", "c"], /--mode must be one of a, b/],
      [["--name", ""], /--name must not be empty/],
      [["--port"], /port/],
    ] as [string[], RegExp][]
  ) {
    assert.throws(
      () => parseFlags(TABLE, args),
      (err: Error) => err instanceof UsageError && pattern.test(err.message),
    );
  }
});

Deno.test("flagHelp shows one line per flag with its default", () => {
  const lines = flagHelp(TABLE);
  assert.equal(lines.length, TABLE.length);
  assert.match(lines[0], /^ {2}--port VALUE +TCP port \(default 5000\)$/);
  assert.match(lines[2], /--mode a\|b +mode \(default a\)/);
  assert.doesNotMatch(lines[4], /default/);
});

Deno.test("client flags: defaults, --ca implies --tls, names checked, no --passphrase flag", () => {
  const config = parseClientFlags([]);
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.port, 5000);
  assert.equal(config.room, "general");
  assert.equal(config.iterations, 600000);
  assert.equal(config.reconnectFor, 60);
  assert.equal(config.tls, false);
  assert.equal(parseClientFlags(["--ca", "ca.pem"]).tls, true);
  assert.throws(() => parseClientFlags(["--iterations", "99999"]), UsageError);
  assert.throws(() => parseClientFlags(["--room", "two words"]), /whitespace/);
  assert.throws(() => parseClientFlags(["--nick", "e\u0301"]), NickFlagError, "a bad nick is exit 5, not 2");
  assert.throws(() => parseClientFlags(["--nick", "bad nick"]), /--nick: .*whitespace/);
  assert.throws(() => parseClientFlags(["--passphrase", "x"]), UsageError);
  const help = clientHelp("9.9.9");
  for (const f of CLIENT_FLAGS) assert.ok(help.includes(`--${f.name}`), f.name);
  assert.match(help, /aeschat client 9\.9\.9/);
});

Deno.test("a negative number is a value out of range, not an ambiguous flag; -h is --help", () => {
  assert.throws(() => parseFlags(TABLE, ["--port", "-1"]), /--port must be from 0 to 65535, got -1/);
  assert.throws(() => parseFlags(TABLE, ["--rate", "-.5"]), /--rate must be from 0 to 100, got -.5/);
  assert.throws(() => parseClientFlags(["--reconnect-for", "-1"]), /--reconnect-for must be from 0 to 86400, got -1/);
  // A value that starts with - for a string flag is still refused, in plain words.
  assert.throws(
    () => parseFlags(TABLE, ["--name", "-x"]),
    /--name needs a value \(a value that starts with - is written --name=-VALUE\)/,
  );
  assert.equal(parseFlags(TABLE, ["--name=-x"]).name, "-x");
  assert.equal(parseClientFlags(["-h"]).help, true);
  assert.match(clientHelp("1").split("\n").find((l) => l.includes("--help"))!, /^ {2}-h, --help +show this help/);
});

Deno.test("a string flag marked multiple collects every value in order; its default is one value", () => {
  const table: FlagSpec[] = [{
    name: "room",
    key: "rooms",
    kind: "string",
    default: "general",
    multiple: true,
    help: "",
  }];
  assert.deepEqual(parseFlags(table, []).rooms, ["general"]);
  assert.deepEqual(parseFlags(table, ["--room", "a", "--room=b"]).rooms, ["a", "b"]);
  assert.throws(() => parseFlags(table, ["--room", ""]), /--room must not be empty/);
  assert.match(flagHelp(table)[0], /\(repeatable\) \(default general\)/);
});

Deno.test("client: --room repeats (a leading # dropped, no room twice), new flags, and every subcommand", () => {
  const config = parseClientFlags(["--room", "#ops", "--room", "General", "--min-iterations", "100000"]);
  assert.deepEqual(config.rooms, ["ops", "General"]);
  assert.equal(config.room, "ops");
  assert.equal(config.minIterations, 100000);
  assert.deepEqual(config.command, { name: "chat" });
  const defaults = parseClientFlags([]);
  assert.equal(defaults.minIterations, 600000);
  assert.equal(defaults.remember, false);
  assert.equal(defaults.noHistory, false);
  assert.equal(defaults.to, undefined);
  assert.throws(() => parseClientFlags(["--room", "ops", "--room", "OPS"]), /a room is named twice/);
  assert.throws(() => parseClientFlags(["--min-iterations", "99999"]), UsageError);
  assert.equal(parseClientFlags(["--to", "bob", "--no-history", "--remember"]).to, "bob");
  assert.throws(() => parseClientFlags(["--to", "b o"]), UsageError);
  const fp = "0db574c5ff390ba1982dd2d2a404cd1c51a1a791";
  const cases: [string[], unknown][] = [
    [["identity"], { name: "identity" }],
    [["identity", "export", "f.json"], { name: "identity export", file: "f.json" }],
    [["identity", "import", "f.json"], { name: "identity import", file: "f.json" }],
    [["identity", "rotate"], { name: "identity rotate" }],
    [["identity", "passphrase"], { name: "identity passphrase" }],
    [["trust-server", "chat.example:5000", "0db5 74c5 ff39 0ba1 982d d2d2 a404 cd1c 51a1 a791"], {
      name: "trust-server",
      address: "chat.example:5000",
      fingerprint: fp,
    }],
    [["trust", "bob", "--port", "6000"], { name: "trust", nick: "bob", fingerprint: undefined }],
    [["forget-room", "#ops"], { name: "forget-room", room: "ops" }],
    [["accept", "ops", "--nick", "bob"], { name: "accept", room: "ops" }],
    [["--port", "6000", "trust", "--host", "chat.example", "bob"], {
      name: "trust",
      nick: "bob",
      fingerprint: undefined,
    }],
    [["--nick", "identity", "forget-room", "ops"], { name: "forget-room", room: "ops" }],
  ];
  for (const [args, command] of cases) assert.deepEqual(parseClientFlags(args).command, command, args.join(" "));
  for (
    const [args, pattern] of [
      [["identity", "export"], /usage: identity export FILE/],
      [["identity", "frobnicate"], /unknown identity subcommand/],
      [["trust-server", "nohost"], /not HOST:PORT/],
      [["trust-server", "h:1", "xyz"], /not a fingerprint/],
      [["trust"], /usage: trust NICK/],
      [["forget-room", "a b"], /usage|whitespace/],
      [["dance"], /unknown subcommand "dance"/],
    ] as [string[], RegExp][]
  ) {
    assert.throws(() => parseClientFlags(args), (err: Error) => err instanceof UsageError && pattern.test(err.message));
  }
  const help = clientHelp("1");
  for (const word of ["identity export FILE", "trust-server HOST:PORT", "forget-room ROOM", "accept ROOM"]) {
    assert.ok(help.includes(word), word);
  }
  assert.match(help, /^ {2}7 {2}refused: a pinned key or room parameter changed/m);
});
