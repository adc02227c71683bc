import assert from "node:assert/strict";
import { type CommandContext, COMMANDS, helpLines, runLine } from "../lib/client/commands.ts";
import { JoinError, SendError, type Session } from "../lib/client/session.ts";

const FINGERPRINT = "0db574c5ff390ba1982dd2d2a404cd1c51a1a791";
const OTHER = "8adaae9544c7bfbd7326acacf01fb44ca02e7725";

function fakeContext(room: string | null = "general", answers: string[] = []) {
  const calls: string[] = [];
  const session = {
    who: (r?: string) => {
      calls.push(`who ${r}`);
      return Promise.resolve([
        { nick: "alice", fingerprint: FINGERPRINT, trust: "verified" },
        { nick: "bob", fingerprint: OTHER, trust: "changed" },
      ]);
    },
    roomList: () => Promise.resolve([{ name: "general", count: 2 }]),
    changeNick: (nick: string) => {
      if (nick === "taken") return Promise.reject(new JoinError("nick_registered", "nick taken is registered"));
      calls.push(`nick ${nick}`);
      return Promise.resolve();
    },
    older: (n: number, options: { room?: string }) => {
      calls.push(`older ${n} ${options.room}`);
      return Promise.resolve({ shown: 0, more: false });
    },
    msg: (nick: string, text: string) => {
      if (nick === "mallory") throw new SendError("mallory's key differs from the one you pinned", { code: "changed" });
      calls.push(`msg ${nick} ${text}`);
    },
    invite: (nick: string, options: { room: string }) => calls.push(`invite ${nick} ${options.room}`),
    accept: (r?: string) => {
      calls.push(`accept ${r}`);
      return Promise.resolve({ room: r ?? "ops", members: [], created: false, history: 0 });
    },
    whois: (nick: string) =>
      Promise.resolve(
        nick === "bob"
          ? { nick, fingerprint: OTHER, pinned: FINGERPRINT, trust: "changed" }
          : { nick, fingerprint: FINGERPRINT, pinned: FINGERPRINT, trust: "pinned" },
      ),
    safetyNumber: (nick: string) => Promise.resolve({ nick, number: Array(16).fill("12345").join(" ") }),
    verify: (nick: string) => calls.push(`verify ${nick}`),
    trust: (nick: string, options: { fingerprint?: string }) => {
      calls.push(`trust ${nick} ${options.fingerprint}`);
      return Promise.resolve(options.fingerprint);
    },
    forgetRoom: (r: string) => {
      calls.push(`forget ${r}`);
      return Promise.resolve(true);
    },
  } as unknown as Session;
  const ctx: CommandContext = {
    session,
    room: room ?? undefined,
    status: (text) => calls.push(`status ${text}`),
    warn: (text) => calls.push(`warn ${text}`),
    ask: (question) => {
      calls.push(`ask ${question}`);
      return Promise.resolve(answers.shift());
    },
    say: (text, { action, type }) => {
      calls.push(`${type ?? (action ? "action" : "say")} ${text}`);
      return Promise.resolve();
    },
    join: (r, { generate, remember }) => {
      calls.push(`join ${r}${generate ? " generate" : ""}${remember ? " remember" : ""}`);
      return Promise.resolve();
    },
    part: (r) => {
      calls.push(`part ${r}`);
      return Promise.resolve();
    },
    quit: () => {
      calls.push("quit");
      return Promise.resolve();
    },
  };
  return { ctx, calls };
}

Deno.test("runLine sends plain text, and // escapes a leading slash", async () => {
  const { ctx, calls } = fakeContext();
  await runLine(ctx, "hello there  ");
  await runLine(ctx, "//not a command");
  await runLine(ctx, "   ");
  assert.deepEqual(calls, ["say hello there", "say /not a command"]);
});

Deno.test("runLine dispatches the room commands; a leading # of a room is dropped", async () => {
  const { ctx, calls } = fakeContext("side");
  for (
    const line of [
      "/join #dev --generate",
      "/join ops --remember",
      "/leave",
      "/part #ops",
      "/who",
      "/rooms",
      "/me waves",
      "/topic release day",
      "/nick bob2",
      "/history 5",
      "/forget #old",
      "/QUIT",
    ]
  ) {
    await runLine(ctx, line);
  }
  assert.deepEqual(calls, [
    "join dev generate",
    "join ops remember",
    "part side",
    "part ops",
    "who side",
    "status in #side: alice \u2713, bob [key changed] (2)",
    "status rooms: #general (2)",
    "action waves",
    "topic release day",
    "nick bob2",
    "older 5 side",
    "status no older messages",
    "forget old",
    "status forgot #old: the next join pins it afresh",
    "quit",
  ]);
});

Deno.test("direct messages, invitations and keys: /msg, /invite, /accept, /whois, /verify, /trust", async () => {
  const { ctx, calls } = fakeContext("ops", ["y", "yes"]);
  for (
    const line of [
      "/msg bob psst, over here",
      "/invite carol",
      "/invite dave #general",
      "/accept",
      "/accept #ops",
      "/whois alice",
      "/whois bob",
      "/verify alice",
      "/trust bob",
    ]
  ) {
    await runLine(ctx, line);
  }
  assert.deepEqual(calls.filter((c) => !c.startsWith("status") && !c.startsWith("ask")), [
    "msg bob psst, over here",
    "invite carol ops",
    "invite dave general",
    "accept undefined",
    "join ops",
    "accept ops",
    "join ops",
    "verify alice",
    `trust bob ${OTHER}`,
  ]);
  const statuses = calls.filter((c) => c.startsWith("status "));
  assert.ok(statuses.some((s) => s.includes("alice: key 0db5 74c5") && s.includes("pinned (not verified")));
  assert.ok(statuses.some((s) => s.includes("bob: key 8ada aeae") || s.includes("bob: key 8ada ae95")));
  assert.ok(statuses.some((s) => s.includes("CHANGED")), "a changed key says so");
  assert.ok(statuses.some((s) => s === "status   12345 12345 12345 12345"), "the safety number in rows of 4 groups");
  assert.ok(calls.includes("ask does alice see exactly the same number? [y/N] "));
  assert.ok(statuses.includes("status alice \u2713 is verified"));
});

Deno.test("/verify and /trust do nothing unless confirmed", async () => {
  const { ctx, calls } = fakeContext("ops", ["n", ""]);
  await runLine(ctx, "/verify alice");
  await runLine(ctx, "/trust bob");
  assert.ok(!calls.some((c) => c.startsWith("verify ") || c.startsWith("trust ")), calls.join("\n"));
  assert.ok(calls.includes("status alice not marked verified"));
  assert.ok(calls.includes("status nothing changed"));
});

Deno.test("runLine turns misuse into one warning and never throws", async () => {
  const { ctx, calls } = fakeContext(null);
  for (
    const line of [
      "/bogus",
      "/join",
      "/join a b",
      "/join bad\u0007room",
      "/join ops --bogus",
      "/me",
      "/history 0",
      "/history x",
      "/nick taken",
      "/leave",
      "/msg bob",
      "/msg mallory hi",
      "/invite bob",
      "/whois",
      "/forget",
    ]
  ) {
    await runLine(ctx, line);
  }
  assert.equal(calls.length, 15, JSON.stringify(calls, null, 1));
  assert.ok(calls.every((c) => c.startsWith("warn ")), calls.join("\n"));
  assert.match(calls[0], /unknown command \/bogus/);
  assert.match(calls[8], /registered/);
  assert.match(calls[9], /in no room/);
  assert.match(calls[11], /key differs/);
});

Deno.test("/help is generated from the command table", async () => {
  const { ctx, calls } = fakeContext();
  await runLine(ctx, "/help");
  assert.equal(calls.length, COMMANDS.length + 1);
  for (const c of COMMANDS) assert.ok(calls.some((l) => l.startsWith(`status /${c.name}`)), c.name);
  assert.deepEqual(calls.map((c) => c.slice("status ".length)), helpLines());
});

Deno.test("/who and /rooms show names from the server with white space collapsed and controls neutralized", async () => {
  const { ctx, calls } = fakeContext();
  (ctx.session as unknown as { who: () => Promise<unknown[]> }).who = () =>
    Promise.resolve([
      { nick: `dave${" ".repeat(150)}23:59:59 <carol> ok`, trust: "pinned" },
      { nick: "eve\u202e", trust: "pinned" },
    ]);
  (ctx.session as unknown as { roomList: () => Promise<unknown[]> }).roomList = () =>
    Promise.resolve([{ name: "a\n\nb", count: 1 }]);
  await runLine(ctx, "/who");
  await runLine(ctx, "/rooms");
  assert.deepEqual(calls, [
    "status in #general: dave 23:59:59 <carol> ok, eve\uFFFD (2)",
    "status rooms: #a \u21b5 \u21b5 b (1)",
  ]);
});
