import assert from "node:assert/strict";
import type { ChatSession } from "../lib/client/chat_session.ts";
import { type CommandContext, commandHelp, COMMANDS, helpLines, runLine } from "../lib/client/commands.ts";
import { JoinError } from "../lib/client/session.ts";

/** A context in `room` (null: a direct conversation). */
function fakeContext(room: string | null = "general") {
  const calls: string[] = [];
  const session = {
    who: (r: string) => {
      calls.push(`who ${r}`);
      return Promise.resolve(["alice", "bob"]);
    },
    listRooms: () => Promise.resolve([{ name: "general", members: 2 }]),
    changeNick: (nick: string) => {
      if (nick === "taken") return Promise.reject(new JoinError("nick_in_use", "nick taken is in use"));
      calls.push(`nick ${nick}`);
      return Promise.resolve();
    },
    older: (r: string, n: number) => {
      calls.push(`older ${r} ${n}`);
      return Promise.resolve({ shown: 0, more: false });
    },
  } as unknown as ChatSession;
  const note = (call: string) => {
    calls.push(call);
    return Promise.resolve();
  };
  const ctx: CommandContext = {
    session,
    room: room ?? undefined,
    status: (text) => calls.push(`status ${text}`),
    warn: (text) => calls.push(`warn ${text}`),
    say: (text, { action }) => note(`${action ? "action" : "say"} ${text}`),
    join: (r, { generate }) => note(`join ${r}${generate ? " generate" : ""}`),
    part: (r) => note(`part ${r ?? "(this room)"}`),
    switchTo: (name) => void note(`switch ${name}`),
    query: (nick) => void note(`query ${nick}`),
    topic: (text) => note(`topic ${text ?? "(show)"}`),
    clear: () => void note("clear"),
    retry: () => note("retry"),
    quit: (reason) => note(`quit${reason === undefined ? "" : ` ${reason}`}`),
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

Deno.test("a multi-line message is sent whole, whatever its first line looks like: no line of it runs", async () => {
  const { ctx, calls } = fakeContext();
  await runLine(ctx, "/quit now\n/nick x\nthird\n\n");
  await runLine(ctx, "/join ops\n");
  assert.deepEqual(calls, ["say /quit now\n/nick x\nthird", "say /join ops"]);
});

Deno.test("runLine dispatches every command from the table, by name or alias, in any case", async () => {
  const { ctx, calls } = fakeContext("side");
  for (
    const line of [
      "/join #dev --generate",
      "/leave",
      "/part ops",
      "/switch @carol",
      "/query carol",
      "/topic",
      "/topic deploy friday",
      "/who",
      "/NAMES",
      "/rooms",
      "/me waves",
      "/nick bob2",
      "/history 5",
      "/retry",
      "/clear",
      "/QUIT",
      "/quit gone fishing",
    ]
  ) {
    await runLine(ctx, line);
  }
  assert.deepEqual(calls, [
    "join dev generate",
    "part (this room)",
    "part ops",
    "switch @carol",
    "query carol",
    "topic (show)",
    "topic deploy friday",
    "who side",
    "status in #side: alice, bob (2)",
    "who side",
    "status in #side: alice, bob (2)",
    "status rooms: #general (2)",
    "action waves",
    "nick bob2",
    "older side 5",
    "status no older messages",
    "retry",
    "clear",
    "quit",
    "quit gone fishing",
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
      "/part a b",
      "/switch",
      "/retry now",
      "/help bogus",
      "/query bad nick",
    ]
  ) {
    await runLine(ctx, line);
  }
  assert.equal(calls.length, 14, calls.join("\n"));
  assert.ok(calls.every((c) => c.startsWith("warn ")), calls.join("\n"));
  assert.match(calls[0], /unknown command \/bogus/);
  assert.match(calls[8], /in use/);
  assert.match(calls[12], /no command \/bogus/);
  // Outside a room (a direct conversation), room commands say so.
  const direct = fakeContext(null);
  await runLine(direct.ctx, "/who");
  await runLine(direct.ctx, "/history");
  assert.deepEqual(direct.calls.map((c) => c.replace(/:.*/, "")), [
    "warn /who works in a room",
    "warn /history works in a room",
  ]);
});

Deno.test("/help is generated from the command table, and /help COMMAND tells more, by name or alias", async () => {
  const { ctx, calls } = fakeContext();
  await runLine(ctx, "/help");
  assert.equal(calls.length, COMMANDS.length + 2);
  for (const c of COMMANDS) assert.ok(calls.some((l) => l.startsWith(`status /${c.name}`)), c.name);
  assert.deepEqual(calls.map((c) => c.slice("status ".length)), helpLines());
  for (const c of COMMANDS) {
    for (const name of [c.name, ...(c.aliases ?? [])]) {
      calls.length = 0;
      await runLine(ctx, `/help /${name.toUpperCase()}`);
      assert.deepEqual(calls.map((l) => l.slice("status ".length)), commandHelp(c.name), name);
      assert.ok(calls[0].startsWith(`status /${c.name}`) && calls[0].includes(c.help), calls[0]);
    }
  }
  assert.deepEqual(commandHelp("names"), ["/who: list the members of this room (also /names)"]);
});

Deno.test("README's command list is /help's", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const block = /from the same table that runs them[^\n]*\n\n```\n([\s\S]*?)\n```/.exec(readme);
  assert.ok(block, "README has the /help block");
  assert.deepEqual(block[1].split("\n"), helpLines());
});

Deno.test("/who and /rooms show names from the server with white space collapsed and controls neutralized", async () => {
  const { ctx, calls } = fakeContext();
  (ctx.session as unknown as { who: () => Promise<string[]> }).who = () =>
    Promise.resolve([`dave${" ".repeat(150)}23:59:59 <carol> ok`, "eve\u202e"]);
  (ctx.session as unknown as { listRooms: () => Promise<unknown[]> }).listRooms = () =>
    Promise.resolve([{ name: "a\n\nb", members: 1 }]);
  await runLine(ctx, "/who");
  await runLine(ctx, "/rooms");
  assert.deepEqual(calls, [
    "status in #general: dave 23:59:59 <carol> ok, eve\uFFFD (2)",
    "status rooms: #a \u21b5 \u21b5 b (1)",
  ]);
});
