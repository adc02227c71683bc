/**
 * Several rooms at once, as the terminal shows them: the real interactive terminal in tmux, fed by a scripted
 * multi-room session (tests/support/multiroom_client.ts) standing in for the protocol v2 session, which does not exist
 * yet. The test delivers session events (messages in rooms that are not current, a mention, a topic, a direct
 * message) and checks the screen: the status line's unread counts and marks, that nothing of another room shows in
 * the current one, what switching (Alt-1..9, Ctrl-N, Ctrl-P, /switch) prints, /part, /topic, /join of a joined room,
 * and which calls reach the session (what a server would see).
 *
 * @module
 */

import assert from "node:assert/strict";
import { TmuxScreen } from "./support/tmux.ts";

const TIME = String.raw`\d\d:\d\d:\d\d`;
const count = (text: string, needle: string) => text.split(needle).length - 1;

/** The test's end of the control connection: events out, calls in. */
class Control {
  #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  #conn: Deno.Conn | undefined;
  #calls: Record<string, unknown>[] = [];
  #seq = 0;

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async accept(): Promise<void> {
    this.#conn = await this.#listener.accept();
    (async () => {
      const decoder = new TextDecoder();
      let buffered = "";
      for await (const chunk of this.#conn!.readable) {
        buffered += decoder.decode(chunk, { stream: true });
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) this.#calls.push(JSON.parse(line));
      }
    })().catch(() => {});
  }

  /** Delivers a session event to the terminal. */
  async event(event: Record<string, unknown>): Promise<void> {
    await this.#conn!.write(new TextEncoder().encode(JSON.stringify(event) + "\n"));
  }

  /** A message from `from` in `room`. */
  async message(room: string, from: string, text: string, options: { type?: string; ts?: number } = {}) {
    const message = {
      room,
      seq: ++this.#seq,
      from,
      ts: options.ts ?? Date.now(),
      id: crypto.randomUUID(),
      type: options.type ?? "text",
      text,
      history: false,
    };
    await this.event({ kind: "message", message });
  }

  /** Waits for a call the terminal made to the session, and takes it. */
  async call(test: (call: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
    const deadline = performance.now() + 20_000;
    while (true) {
      const at = this.#calls.findIndex(test);
      if (at >= 0) return this.#calls.splice(at, 1)[0];
      if (performance.now() > deadline) throw new Error(`no call ${what}: ${JSON.stringify(this.#calls)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Takes every call not yet taken. */
  taken(): Record<string, unknown>[] {
    return this.#calls.splice(0);
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // closed by the program
    }
    this.#listener.close();
  }
}

async function withRooms(test: (screen: TmuxScreen, control: Control) => Promise<void>): Promise<void> {
  const control = new Control();
  let screen: TmuxScreen | undefined;
  try {
    const accepted = control.accept();
    screen = await TmuxScreen.start(["--nick", "alice"], {
      script: "tests/support/multiroom_client.ts",
      env: { AESCHAT_CONTROL_PORT: String(control.port) },
    });
    await accepted;
    await control.call((c) => c.call === "join" && c.room === "general", "join general");
    await screen.waitForLastLine("#general>", "the prompt");
    await test(screen, control);
  } finally {
    await screen?.close();
    control.close();
  }
}

/** The status line (the row just above the prompt). */
async function statusLine(screen: TmuxScreen): Promise<string> {
  const lines = (await screen.text()).split("\n").filter((l) => l.trim() !== "");
  return lines[lines.length - 2];
}

Deno.test("rooms: unread counts and mentions in the status line, nothing of another room in this one, switching shows what is new after a marker", async () => {
  await withRooms(async (screen, control) => {
    await control.message("general", "dave", "seen in general");
    await screen.waitFor((t) => t.includes("<dave> seen in general"), "a message in general");
    await screen.line("/join #ops");
    await control.call((c) => c.call === "join" && c.room === "ops", "join ops (the # dropped)");
    await screen.waitForLastLine("#ops>", "the ops prompt");
    assert.equal(await statusLine(screen), "1:#general [2:#ops]");

    // Three messages in #general while alice looks at #ops, one naming her: counted, marked, never shown here.
    assert.equal(await screen.bellRang(), false, "no bell yet");
    await control.message("general", "dave", "while you were away 1");
    await control.message("general", "erin", "while you were away 2");
    await control.message("general", "dave", "ALICE: can you look?");
    await control.message("ops", "erin", "this one is in ops");
    let text = await screen.waitFor((t) => t.includes("<erin> this one is in ops"), "the ops message");
    await screen.waitFor((t) => t.includes("1:#general(3!) [2:#ops]"), "three unread in general, a mention");
    assert.ok(!text.includes("while you were away"), `nothing of #general in #ops:\n${text}`);
    assert.ok(!text.includes("can you look"), `nor the mention:\n${text}`);
    assert.equal(await screen.bellRang(), true, "a mention in another room rings the bell");

    // Alt-1: #general, with the line seen before, the marker, and the three new ones.
    await screen.press("M-1");
    await screen.waitForLastLine("#general>", "back in general");
    text = await screen.text();
    const after = text.slice(text.lastIndexOf("-- now in #general"));
    assert.match(
      after,
      new RegExp(
        `^-- now in #general\\n(?:.*\\n)*?${TIME} <dave> seen in general\\n-- new since you last looked: 3 messages\\n` +
          `${TIME} <dave> while you were away 1\\n${TIME} <erin> while you were away 2\\n${TIME} <dave> ALICE: can you look\\?\\n`,
      ),
      after,
    );
    assert.equal(await statusLine(screen), "[1:#general] 2:#ops");
    assert.equal(count(text, "while you were away 1"), 1, "shown once, when switching");

    // Ctrl-N and Ctrl-P go round; /switch by name and number; a line goes to the room that was current.
    await screen.press("C-n");
    await screen.waitForLastLine("#ops>", "Ctrl-N to ops");
    await screen.press("C-p");
    await screen.waitForLastLine("#general>", "Ctrl-P to general");
    await screen.line("/switch 2");
    await screen.waitForLastLine("#ops>", "/switch 2");
    await screen.line("hello ops");
    assert.deepEqual(await control.call((c) => c.call === "say", "say in ops"), {
      call: "say",
      target: { room: "ops" },
      text: "hello ops",
      type: "text",
    });
    await screen.waitFor((t) => new RegExp(`${TIME} <alice> hello ops`).test(t), "alice's line in ops");
    await screen.line("/switch nowhere");
    await screen.waitFor((t) => t.includes("!! no conversation nowhere: /join a room first"), "an unknown name");
  });
});

Deno.test("rooms: /topic sets and shows a topic in the status line, /join of a joined room only switches, /part leaves, a direct conversation", async () => {
  await withRooms(async (screen, control) => {
    await screen.line("/join ops");
    await control.call((c) => c.call === "join" && c.room === "ops", "join ops");
    await screen.waitForLastLine("#ops>", "in ops");
    await screen.line("/topic deploy on friday");
    assert.deepEqual(await control.call((c) => c.call === "say", "the topic"), {
      call: "say",
      target: { room: "ops" },
      text: "deploy on friday",
      type: "topic",
    });
    await screen.waitFor((t) => t.includes("-- you set the topic: deploy on friday"), "the topic set");
    await screen.waitFor((t) => t.includes("1:#general [2:#ops] · topic: deploy on friday"), "the topic shown");
    // Someone else's topic, from the session (as a v2 session delivers the plaintext type "topic").
    await control.message("ops", "dave", "release train at 15:00", { type: "topic" });
    await screen.waitFor((t) => /\d -- dave set the topic: release train at 15:00/.test(t), "dave's topic");
    await screen.waitFor((t) => t.includes("· topic: release train at 15:00"), "the new topic shown");
    await screen.line("/topic");
    await screen.waitFor((t) => t.includes("-- topic of #ops: release train at 15:00"), "/topic shows it");

    // /join of a room this connection is in switches to it, and its history is not asked for again.
    await screen.line("/join general --generate");
    await screen.waitForLastLine("#general>", "switched to general");
    await screen.waitFor((t) => t.includes("-- #general already exists: --generate was ignored"), "the flag ignored");
    await screen.line("/join OPS");
    await screen.waitForLastLine("#ops>", "switched to ops by another spelling");
    await screen.line("/rooms");
    await screen.waitFor((t) => t.includes("-- rooms: #general (3), #ops (3)"), "still two rooms");
    assert.deepEqual(control.taken().filter((c) => c.call !== "say"), [], "no second join, no part");

    // A direct message opens a conversation with the person, counted as a mention.
    await control.event({
      kind: "direct",
      message: {
        room: null,
        from: "carol",
        to: "alice",
        peer: "carol",
        seq: 1,
        sent_at: Date.now(),
        ts: Date.now(),
        id: "d1",
        type: "text",
        text: "psst",
        own: false,
        history: false,
        fingerprint: "0".repeat(40),
        trust: "pinned",
        marks: [],
      },
    });
    await screen.waitFor((t) => t.includes("1:#general [2:#ops] 3:@carol(1!)"), "the direct conversation");
    await screen.line("/switch @carol");
    await screen.waitForLastLine("@carol>", "in the direct conversation");
    await screen.line("hi carol");
    assert.deepEqual((await control.call((c) => c.call === "say", "the direct message")).target, { peer: "carol" });
    await screen.waitFor((t) => new RegExp(`${TIME} <alice> hi carol`).test(t), "alice's direct line");
    await screen.line("/who");
    await screen.waitFor((t) => t.includes("!! /who works in a room: /switch to one first"), "/who in @carol");
    // /query opens a direct conversation before anything was said in it.
    await screen.line("/query dave");
    await screen.waitForLastLine("@dave>", "the conversation with dave");
    await screen.waitFor((t) => t.includes("1:#general 2:#ops 3:@carol [4:@dave]"), "four conversations");
    await screen.line("/me waves");
    assert.deepEqual(await control.call((c) => c.call === "say", "the direct action"), {
      call: "say",
      target: { peer: "dave" },
      text: "waves",
      type: "action",
    });
    await screen.press("M-3");
    await screen.waitForLastLine("@carol>", "Alt-3: carol");

    // /part leaves the room: the conversation closes and the one before it is current.
    await screen.press("M-2");
    await screen.waitForLastLine("#ops>", "back in ops");
    await screen.line("/part");
    assert.deepEqual(await control.call((c) => c.call === "part", "part"), { call: "part", room: "ops" });
    await screen.waitForLastLine("#general>", "ops left");
    await screen.waitFor((t) => t.includes("-- left #ops"), "the part said");
    assert.equal(await statusLine(screen), "[1:#general] 2:@carol 3:@dave");
    await screen.line("/part ops");
    await screen.waitFor((t) => t.includes("!! not in #ops"), "not in ops any more");
    // A room the session leaves on its own says why.
    await screen.line("/join dev");
    await screen.waitForLastLine("#dev>", "in dev");
    await control.event({ kind: "parted", room: "dev", reason: "the room was removed" });
    await screen.waitFor((t) => t.includes("-- left #dev (the room was removed)"), "the parted event");
    await screen.waitForLastLine("@dave>", "the conversation before it");
  });
});

Deno.test("rooms: Tab completes the members of the current room", async () => {
  await withRooms(async (screen, control) => {
    await control.event({ kind: "presence", event: "join", room: "general", nick: "frank" });
    await screen.waitFor((t) => /\d -- frank joined #general/.test(t), "frank joins, with a time");
    await screen.type("fr");
    await screen.press("Tab");
    await screen.waitForLastLine("#general> frank:", "frank completed");
    await screen.type("hi");
    await screen.press("Enter");
    assert.equal((await control.call((c) => c.call === "say", "the completed line")).text, "frank: hi");
    await screen.type("/pa");
    await screen.press("Tab");
    await screen.waitForLastLine("#general> /part", "/part completed");
    await screen.press("C-u");
    await screen.type("/switch #");
    await screen.press("Tab");
    await screen.waitForLastLine("#general> /switch #general", "a conversation completed");
  });
});
