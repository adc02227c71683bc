/**
 * End-to-end tests of the interactive client: the real client.ts runs in a real terminal (tmux, on a private socket
 * per test) against the real server, and the tests read the screen. The other members are raw protocol clients.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { type ServerProcess, startServer, taskArgs } from "./support/programs.ts";
import { type FrameTransform, parseBody, TcpProxy } from "./support/proxy.ts";
import { WireClient } from "./support/wire.ts";

const PASSPHRASE = "terminal test passphrase 77";
const ROOT = new URL("../", import.meta.url).pathname;

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** One terminal with the client running in it. */
class Screen {
  readonly socket = `aeschat-${crypto.randomUUID().slice(0, 8)}`;
  #dir = "";

  static async start(
    args: string[],
    options: { env?: Record<string, string>; colour?: boolean } = {},
  ): Promise<Screen> {
    const screen = new Screen();
    screen.#dir = await Deno.makeTempDir({ prefix: "aeschat-tty-" });
    const env = { ...(options.colour ? {} : { NO_COLOR: "1" }), TERM: "xterm-256color", ...options.env };
    const script = [
      `cd ${quote(ROOT)}`,
      ...(options.colour ? ["unset NO_COLOR"] : []),
      `${Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`).join(" ")} ${quote(Deno.execPath())} ${
        [...taskArgs("client"), ...args].map(quote).join(" ")
      }`,
      'echo "EXIT=$?"',
      "sleep 600",
    ].join("\n");
    await Deno.writeTextFile(`${screen.#dir}/run.sh`, script);
    await screen.tmux("new-session", "-d", "-s", "main", "-x", "120", "-y", "40", `sh ${screen.#dir}/run.sh`);
    return screen;
  }

  async tmux(...args: string[]): Promise<string> {
    const out = await new Deno.Command("tmux", { args: ["-L", this.socket, ...args], stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) throw new Error(`tmux ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    return new TextDecoder().decode(out.stdout);
  }

  /** The whole screen and its scrollback, lines joined where they wrapped. */
  async text(options: { escapes?: boolean } = {}): Promise<string> {
    return await this.tmux("capture-pane", "-p", "-J", "-S", "-", ...(options.escapes ? ["-e"] : []), "-t", "main");
  }

  /** The last non-empty line: the prompt line. */
  async lastLine(): Promise<string> {
    const lines = (await this.text()).split("\n").filter((l) => l.trim() !== "");
    return lines[lines.length - 1] ?? "";
  }

  async waitFor(test: (text: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const text = await this.text();
      if (test(text)) return text;
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}; screen:\n${text}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async type(text: string): Promise<void> {
    await this.tmux("send-keys", "-t", "main", "-l", text);
  }

  async press(...keys: string[]): Promise<void> {
    await this.tmux("send-keys", "-t", "main", ...keys);
  }

  async line(text: string): Promise<void> {
    await this.type(text);
    await this.press("Enter");
  }

  async close(): Promise<void> {
    await this.tmux("kill-server").catch(() => {});
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

async function member(port: number, nick: string, room = "general"): Promise<WireClient> {
  const client = await WireClient.connect(port);
  await client.hello(nick);
  const joined = await client.join(room, PASSPHRASE);
  assert.equal(joined.type, "joined", JSON.stringify(joined));
  return client;
}

async function stopAll(server: ServerProcess | undefined, screen: Screen | undefined, clients: WireClient[]) {
  await screen?.close();
  for (const c of clients) c.close();
  await server?.program.stop().catch(() => {});
  if (server) await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

Deno.test("creating a room: nick prompt, hidden passphrase, weak-passphrase confirmation, and /quit exits 0", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    screen = await Screen.start(["--port", String(server.port), "--iterations", "100000"]);
    await screen.waitFor((t) => t.includes("nick:"), "the nick prompt");
    await screen.line("alice");
    await screen.waitFor((t) => t.includes("does not exist yet: creating it"), "the creation notice");
    await screen.waitFor((t) => t.includes("choose a passphrase for #general"), "the passphrase prompt");
    await screen.line("tooshort");
    let text = await screen.waitFor((t) => t.includes("create the room with it anyway? [y/N]"), "the confirmation");
    assert.match(text, /shorter than 12 characters/);
    await screen.line("n");
    text = await screen.waitFor((t) => t.includes("EXIT="), "the client to stop after the refusal");
    assert.match(text, /not joined #general/);
    assert.match(text, /EXIT=0/, "declining is not an error");
    assert.ok(!text.includes("tooshort"), "the passphrase was never echoed");
    await screen.close();

    screen = await Screen.start(["--port", String(server.port), "--nick", "alice", "--iterations", "100000"]);
    await screen.waitFor((t) => t.includes("choose a passphrase for #general"), "the passphrase prompt");
    await screen.line(PASSPHRASE);
    await screen.waitFor((t) => t.includes("repeat the passphrase"), "the repeat prompt");
    await screen.line(PASSPHRASE);
    text = await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    assert.match(text, /deriving room key \(100000 iterations\): done in/);
    assert.match(text, /created #general: alice is here/);
    assert.ok(!text.includes(PASSPHRASE), "the passphrase was never echoed");
    // The room really uses that passphrase: a raw member proves it.
    const bob = await member(server.port, "bob");
    clients.push(bob);
    await screen.line("hello from the terminal");
    const m = await bob.next("message");
    assert.equal(m.envelope.from, "alice");
    text = await screen.waitFor((t) => /\d\d:\d\d:\d\d <alice> hello from the terminal/.test(t), "the sent line");
    assert.equal(count(text, "hello from the terminal"), 1, "the typed line is replaced by the formatted message");
    // Up recalls input history, which holds the message but never the passphrase.
    await screen.press("Up", "Up", "Up");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(!(await screen.text()).includes(PASSPHRASE), "the passphrase is not in the input history");
    await screen.press("C-u");
    await screen.line("/quit");
    text = await screen.waitFor((t) => t.includes("EXIT="), "the exit");
    assert.match(text, /EXIT=0/);
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("an incoming message prints above the prompt and the half-typed line stays intact; commands work", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await member(server.port, "bob");
    clients.push(bob);
    await bob.say("said before carol came");
    screen = await Screen.start(["--port", String(server.port), "--nick", "carol"], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    let text = await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    assert.match(text, /-- history\n\d\d:\d\d:\d\d <bob> said before carol came\n-- end of history/);
    await bob.next("presence", { where: (p) => p.nick === "carol" });

    await screen.type("half typed wo");
    await screen.waitFor((t) => t.includes("#general> half typed wo"), "the half-typed line");
    await bob.say("hello carol");
    text = await screen.waitFor((t) => t.includes("<bob> hello carol"), "bob's live message");
    assert.equal(await screen.lastLine(), "#general> half typed wo", `the prompt line after the message:\n${text}`);
    await screen.line("rds");
    const m = await bob.next("message");
    const opened = await (await import("../lib/crypto.ts")).openEnvelope(bob.keys!, {
      envelope: m.envelope,
      room: "general",
    });
    assert.equal(opened.plaintext.body, "half typed words");

    await screen.line("/me waves");
    await screen.waitFor((t) => /\d\d:\d\d:\d\d \* carol waves/.test(t), "the action");
    await screen.line("/who");
    await screen.waitFor((t) => /-- in #general: (bob, carol|carol, bob) \(2\)/.test(t), "/who");
    await screen.line("/rooms");
    await screen.waitFor((t) => t.includes("-- rooms: #general (2)"), "/rooms");
    await screen.line("/nick carol2");
    await screen.waitFor((t) => t.includes("you are now known as carol2"), "the nick change");
    const presence = await bob.next("presence", { where: (p) => p.event === "nick" });
    assert.equal(presence.nick, "carol2");
    await screen.line("/frobnicate");
    await screen.waitFor((t) => t.includes("!! unknown command /frobnicate"), "the unknown command");
    await screen.line("/help");
    text = await screen.waitFor((t) => t.includes("Start a message with //"), "/help");
    for (const name of ["join", "leave", "who", "rooms", "me", "nick", "history", "help", "quit"]) {
      assert.match(text, new RegExp(`-- /${name}\\b`), name);
    }
    await screen.line("/history 5");
    await screen.waitFor((t) => t.includes("no older messages"), "/history");
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("/join asks for the other room's passphrase and moves; --generate makes one; /leave goes back", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const dave = await member(server.port, "dave", "ops");
    clients.push(dave);
    screen = await Screen.start(["--port", String(server.port), "--nick", "erin", "--iterations", "100000"], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    await screen.line("/join ops");
    await screen.waitFor((t) => t.includes("passphrase for #ops:"), "the passphrase prompt for ops");
    await screen.line(PASSPHRASE);
    let text = await screen.waitFor((t) => t.includes("#ops> "), "the ops prompt");
    assert.match(text, /joined #ops: (dave, erin|erin, dave) are here/);
    await dave.next("presence", { where: (p) => p.nick === "erin" && p.room === "ops" });

    await screen.line("/join vault --generate");
    text = await screen.waitFor((t) => t.includes("#vault> "), "the new room");
    const generated = /passphrase for #vault: ([0-9a-z]{4}(?:-[0-9a-z]{4}){5})/.exec(text);
    assert.ok(generated, `a generated passphrase is shown:\n${text}`);
    assert.match(text, /share it with your team/);
    // It works: a raw member joins the new room with it.
    const frank = await WireClient.connect(server.port);
    clients.push(frank);
    await frank.hello("frank");
    assert.equal((await frank.join("vault", generated[1])).type, "joined");

    await screen.line("/leave");
    await screen.waitFor((t) => t.trimEnd().endsWith("#general>"), "back in general");
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("a forged message shows one warning naming the sender and never its text", async () => {
  const server = await startServer();
  const forged = new Set<string>();
  const transform: FrameTransform = (body) => {
    const msg = parseBody(body);
    if (msg.type !== "message") return [body];
    const envelope = msg.envelope as Record<string, string>;
    if (!forged.has(envelope.id)) return [body];
    const ct = Uint8Array.fromBase64(envelope.ct);
    ct[0] ^= 1;
    envelope.ct = ct.toBase64();
    return [JSON.stringify(msg)];
  };
  const proxy = TcpProxy.start(server.port, { transform });
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const mallory = await member(server.port, "mallory");
    clients.push(mallory);
    screen = await Screen.start(["--port", String(proxy.port), "--nick", "gina"], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    const envelope = await mallory.seal("forged secret text");
    forged.add(envelope.id);
    await mallory.send({ type: "send", envelope });
    await mallory.say("genuine text");
    const text = await screen.waitFor((t) => t.includes("<mallory> genuine text"), "the genuine message");
    assert.ok(!text.includes("forged secret text"));
    const warnings = text.split("\n").filter((l) => /warning/.test(l));
    assert.equal(warnings.length, 1, text);
    assert.match(warnings[0], /^!! warning: a message claiming to be from mallory .*failed authentication/);
  } finally {
    await stopAll(server, screen, clients);
    await proxy.close();
  }
});

Deno.test("a server restart shows a status line and the client reconnects; Ctrl-C exits 0", async () => {
  const first = await startServer();
  let second: ServerProcess | undefined;
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    screen = await Screen.start(["--port", String(first.port), "--nick", "hank"], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    await first.program.stop("SIGTERM");
    await screen.waitFor((t) => t.includes("connection lost"), "the lost-connection status");
    second = await startServer({ db: first.db, args: ["--port", String(first.port)] });
    await screen.waitFor((t) => t.includes("reconnected:"), "the reconnect", 30_000);
    const ivy = await member(second.port, "ivy");
    clients.push(ivy);
    await ivy.say("after the restart");
    await screen.waitFor((t) => t.includes("<ivy> after the restart"), "a message after the restart");
    await screen.press("C-c");
    const text = await screen.waitFor((t) => t.includes("EXIT="), "the exit");
    assert.match(text, /EXIT=0/);
  } finally {
    await stopAll(second, screen, clients);
    await first.program.stop().catch(() => {});
    await Deno.remove(dirname(first.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("without NO_COLOR each nick has its own stable colour", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const jack = await member(server.port, "jack");
    const kate = await member(server.port, "kate");
    clients.push(jack, kate);
    screen = await Screen.start(["--port", String(server.port), "--nick", "liam"], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
      colour: true,
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    for (const [who, text] of [[jack, "one"], [kate, "two"], [jack, "three"]] as const) await who.say(text);
    await screen.waitFor((t) => t.includes("<jack> three"), "the messages");
    const raw = await screen.text({ escapes: true });
    const colourOf = (nick: string) =>
      [...raw.matchAll(new RegExp(`\\x1b\\[38;5;(\\d+)m${nick}\\x1b\\[(?:0|39)m`, "g"))].map((m) => m[1]);
    const jacks = colourOf("jack");
    assert.equal(jacks.length, 2, raw);
    assert.equal(jacks[0], jacks[1], "the same nick, the same colour");
    assert.equal(colourOf("kate").length, 1, raw);
  } finally {
    await stopAll(server, screen, clients);
  }
});
