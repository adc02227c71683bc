import assert from "node:assert/strict";
import { type ConversationLine, Conversations, namesNick } from "../lib/client/conversations.ts";
import { formatStatusLine } from "../lib/client/status_line.ts";

const DAY = 24 * 3600 * 1000;
const NOON = new Date(2026, 2, 2, 12, 0, 0).getTime();

function message(
  text: string,
  options: Partial<Extract<ConversationLine, { kind: "message" }>> = {},
): ConversationLine {
  return {
    kind: "message",
    ts: NOON,
    from: "bob",
    type: "text",
    text,
    history: false,
    mention: false,
    own: false,
    ...options,
  };
}

const texts = (lines: ConversationLine[] | undefined) =>
  (lines ?? []).map((l) => l.kind === "message" ? l.text : l.kind === "status" ? `-- ${l.text}` : `day ${l.ts}`);

/** Three rooms and a direct conversation, #general current. */
function threeRooms(): Conversations {
  const view = new Conversations({ context: 2 });
  for (const room of ["general", "ops", "dev"]) view.open("room", room);
  view.open("direct", "carol");
  view.switchTo("#general");
  return view;
}

Deno.test("lines of a conversation that is not current are kept and counted, never printed", () => {
  const view = threeRooms();
  assert.deepEqual(texts(view.add("#general", message("here")).print), ["here"]);
  assert.deepEqual(view.add("#ops", message("elsewhere 1")).print, []);
  assert.deepEqual(view.add("#ops", message("alice: elsewhere 2", { mention: true })).print, []);
  assert.deepEqual(view.add("#ops", { kind: "status", text: "dave joined #ops", ts: NOON }).print, []);
  assert.deepEqual(view.add("#dev", message("mine", { own: true })).print, []);
  assert.deepEqual(view.add("#dev", message("old", { history: true })).print, []);
  assert.deepEqual(view.summary().map(({ key, unread, mentions, current }) => [key, unread, mentions, current]), [
    ["#general", 0, 0, true],
    ["#ops", 2, 1, false],
    ["#dev", 0, 0, false],
    ["@carol", 0, 0, false],
  ]);
});

Deno.test("switching shows a few lines already seen, then a marker, then what arrived since; counts reset", () => {
  const view = threeRooms();
  view.switchTo("#ops");
  for (const text of ["seen 1", "seen 2", "seen 3"]) view.add("#ops", message(text));
  view.switchTo("#general");
  view.add("#ops", message("new 1"));
  view.add("#ops", message("new 2"));
  assert.deepEqual(texts(view.switchTo("#ops")), [
    "-- now in #ops",
    "seen 2",
    "seen 3",
    "-- new since you last looked: 2 messages",
    "new 1",
    "new 2",
  ]);
  assert.deepEqual(view.summary()[1], { key: "#ops", index: 2, unread: 0, mentions: 0, current: true });
  // Back and forth with nothing new: no marker.
  view.switchTo("#general");
  assert.deepEqual(texts(view.switchTo("#ops")), ["-- now in #ops", "new 1", "new 2"]);
  assert.equal(view.switchTo("#nowhere"), undefined);
});

Deno.test("the marker counts what the status line counts: one's own lines and presence are not new to anyone", () => {
  const view = threeRooms();
  view.add("@carol", message("mine to carol", { from: "kim", own: true }));
  view.add("#ops", { kind: "status", text: "dave joined #ops", ts: NOON });
  assert.deepEqual(view.summary().map((c) => c.unread), [0, 0, 0, 0]);
  // Nothing new from anyone: the lines are there, without a marker that would count them.
  assert.deepEqual(texts(view.switchTo("@carol")), ["-- now in @carol", "mine to carol"]);
  assert.deepEqual(texts(view.switchTo("#ops")), ["-- now in #ops", "-- dave joined #ops"]);
  view.switchTo("#general");
  view.add("#ops", message("mine in ops", { from: "kim", own: true }));
  view.add("#ops", message("from bob"));
  view.add("#ops", message("mine again", { from: "kim", own: true }));
  assert.equal(
    formatStatusLine(view.summary(), { width: 80, colour: false, highlight: false }),
    "[1:#general] 2:#ops(1) 3:#dev 4:@carol",
  );
  assert.deepEqual(texts(view.switchTo("#ops")), [
    "-- now in #ops",
    "-- dave joined #ops",
    "-- new since you last looked: 1 message",
    "mine in ops",
    "from bob",
    "mine again",
  ]);
});

Deno.test("Alt-number, next and previous (wrapping), and names as the user types them", () => {
  const view = threeRooms();
  assert.equal(view.keyAt(2), "#ops");
  assert.equal(view.keyAt(9), undefined);
  assert.equal(view.nextKey(1), "#ops");
  assert.equal(view.nextKey(-1), "@carol");
  view.switchTo("@carol");
  assert.equal(view.nextKey(1), "#general");
  assert.equal(view.find("ops"), "#ops");
  assert.equal(view.find("#dev"), "#dev");
  assert.equal(view.find("carol"), "@carol");
  assert.equal(view.find("3"), "#dev");
  assert.equal(view.find("#carol"), undefined);
});

Deno.test("closing the current conversation makes the one before it current and shows it", () => {
  const view = threeRooms();
  view.add("#general", message("in general"));
  view.switchTo("#ops");
  const shown = view.close("#ops");
  assert.equal(view.current?.key, "#general");
  assert.deepEqual(texts(shown), ["-- now in #general", "in general"]);
  assert.deepEqual(view.list.map((c) => c.key), ["#general", "#dev", "@carol"]);
  assert.deepEqual(view.close("#dev"), [], "closing another one shows nothing");
});

Deno.test("a line from another day than the line before it comes after a day line; the first line does not", () => {
  const view = threeRooms();
  assert.deepEqual(texts(view.add("#general", message("yesterday", { ts: NOON - DAY, history: true })).print), [
    "yesterday",
  ]);
  assert.deepEqual(texts(view.add("#general", message("later yesterday", { ts: NOON - DAY + 60_000 })).print), [
    "later yesterday",
  ]);
  assert.deepEqual(texts(view.add("#general", { kind: "status", text: "bob joined", ts: NOON }).print), [
    `day ${NOON}`,
    "-- bob joined",
  ]);
  assert.deepEqual(texts(view.add("#general", { kind: "status", text: "no time" }).print), ["-- no time"]);
  // Elsewhere too: the day line is kept with the lines and shown on switching.
  view.add("#ops", message("monday", { ts: NOON - DAY }));
  view.add("#ops", message("tuesday", { ts: NOON }));
  assert.deepEqual(texts(view.switchTo("#ops")).slice(-3), ["monday", `day ${NOON}`, "tuesday"]);
});

Deno.test("a buffer keeps its last lines; what was dropped unseen is said on switching", () => {
  const view = new Conversations({ keep: 3, context: 1 });
  view.open("room", "general");
  view.open("room", "ops");
  view.switchTo("#general");
  for (let i = 1; i <= 5; i++) view.add("#ops", message(`m${i}`));
  assert.equal(view.get("#ops")!.lines.length, 3);
  assert.equal(view.summary()[1].unread, 5);
  assert.deepEqual(texts(view.switchTo("#ops")), [
    "-- now in #ops",
    "-- new since you last looked: 5 messages (2 older ones no longer kept)",
    "m3",
    "m4",
    "m5",
  ]);
});

Deno.test("/clear empties the buffer; members and topic are kept per conversation", () => {
  const view = threeRooms();
  const ops = view.open("room", "ops");
  ops.members.add("dave");
  ops.topic = "deploy friday";
  view.add("#ops", message("x"));
  view.clear("#ops");
  assert.equal(view.get("#ops")!.lines.length, 0);
  assert.equal(view.summary()[1].unread, 0);
  assert.deepEqual([...view.get("#ops")!.members], ["dave"]);
  assert.deepEqual(texts(view.switchTo("#ops")), ["-- now in #ops", "-- topic: deploy friday"]);
});

Deno.test("a mention is the nick as a word, in any case", () => {
  for (const text of ["alice", "Alice: look", "hey ALICE!", "@alice", "(alice)", "thanks alice.", "alice's turn"]) {
    assert.ok(namesNick(text, "alice"), text);
  }
  for (const text of ["malice", "alicex", "alice_2", "alicé", "ali ce", ""]) assert.ok(!namesNick(text, "alice"), text);
  assert.ok(namesNick("ping [bot]!", "[bot]"), "punctuation in a nick is matched literally");
  assert.ok(!namesNick("a.c", "a+c"));
  assert.ok(namesNick("ÉLODIE, viens", "élodie"));
});

Deno.test("the status line: the current one bracketed, unread counts, mentions marked, the topic, cut to fit", () => {
  const view = threeRooms();
  view.get("#general")!.topic = "deploy on friday";
  view.add("#ops", message("a"));
  view.add("#ops", message("b"));
  view.add("@carol", message("c", { mention: true }));
  const plain = formatStatusLine(view.summary(), { width: 120, colour: false, highlight: false });
  assert.equal(plain, "[1:#general] 2:#ops(2) 3:#dev 4:@carol(1!) · topic: deploy on friday");
  const cut = formatStatusLine(view.summary(), { width: 30, colour: false, highlight: false });
  assert.equal(cut, "[1:#general] 2:#ops(2) 3:#…");
  assert.ok(cut.length <= 29);
  const bold = formatStatusLine(view.summary(), { width: 120, colour: false });
  assert.ok(bold.includes("\x1b[1m4:@carol(1!)\x1b[0m"), "a mention is bold even without colour");
  const coloured = formatStatusLine(view.summary(), { width: 120, colour: true });
  assert.ok(coloured.includes("\x1b[1;31m4:@carol(1!)\x1b[0m"), coloured);
  // A room name is shown sanitized.
  const lying = formatStatusLine([{ key: "#a\u001b[2Jb", index: 1, unread: 0, mentions: 0, current: true }], {
    width: 80,
    colour: false,
    highlight: false,
  });
  assert.equal(lying, "[1:#a\uFFFD[2Jb]");
});
