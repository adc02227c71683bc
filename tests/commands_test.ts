import assert from "node:assert/strict";
import { type CommandContext, COMMANDS, helpLines, runLine } from "../lib/client/commands.ts";
import { JoinError, type Session } from "../lib/client/session.ts";

function fakeContext(room = "general") {
  const calls: string[] = [];
  const session = {
    room,
    who: () => Promise.resolve(["alice", "bob"]),
    rooms: () => Promise.resolve([{ name: "general", members: 2 }]),
    changeNick: (nick: string) => {
      if (nick === "taken") return Promise.reject(new JoinError("nick_in_use", "nick taken is in use"));
      calls.push(`nick ${nick}`);
      return Promise.resolve();
    },
    older: (n: number) => {
      calls.push(`older ${n}`);
      return Promise.resolve({ shown: 0, more: false });
    },
  } as unknown as Session;
  const ctx: CommandContext = {
    session,
    status: (text) => calls.push(`status ${text}`),
    warn: (text) => calls.push(`warn ${text}`),
    say: (text, { action }) => {
      calls.push(`${action ? "action" : "say"} ${text}`);
      return Promise.resolve();
    },
    join: (r, { generate }) => {
      calls.push(`join ${r}${generate ? " generate" : ""}`);
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

Deno.test("runLine dispatches every command from the table", async () => {
  const { ctx, calls } = fakeContext("side");
  for (
    const line of ["/join dev --generate", "/leave", "/who", "/rooms", "/me waves", "/nick bob2", "/history 5", "/QUIT"]
  ) {
    await runLine(ctx, line);
  }
  assert.deepEqual(calls, [
    "join dev generate",
    "join general",
    "status in #side: alice, bob (2)",
    "status rooms: #general (2)",
    "action waves",
    "nick bob2",
    "older 5",
    "status no older messages",
    "quit",
  ]);
});

Deno.test("runLine turns misuse into one warning and never throws", async () => {
  const { ctx, calls } = fakeContext();
  for (
    const line of [
      "/bogus",
      "/join",
      "/join a b",
      "/join bad\u0007room",
      "/me",
      "/history 0",
      "/history x",
      "/who x",
      "/nick taken",
      "/leave",
    ]
  ) {
    await runLine(ctx, line);
  }
  assert.equal(calls.length, 10, calls.join("\n"));
  assert.ok(calls.every((c) => c.startsWith("warn ")), calls.join("\n"));
  assert.match(calls[0], /unknown command \/bogus/);
  assert.match(calls[8], /in use/);
  assert.match(calls[9], /already in #general/);
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
  (ctx.session as unknown as { who: () => Promise<string[]> }).who = () =>
    Promise.resolve([`dave${" ".repeat(150)}23:59:59 <carol> ok`, "eve\u202e"]);
  (ctx.session as unknown as { rooms: () => Promise<unknown[]> }).rooms = () =>
    Promise.resolve([{ name: "a\n\nb", members: 1 }]);
  await runLine(ctx, "/who");
  await runLine(ctx, "/rooms");
  assert.deepEqual(calls, [
    "status in #general: dave 23:59:59 <carol> ok, eve\uFFFD (2)",
    "status rooms: #a \u21b5 \u21b5 b (1)",
  ]);
});
