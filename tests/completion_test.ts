import assert from "node:assert/strict";
import { Completer, type CompletionSources } from "../lib/client/completion.ts";
import { commandNames, COMMANDS, findCommand } from "../lib/client/commands.ts";

const sources: CompletionSources = {
  commands: commandNames(),
  argumentOf: (name) => findCommand(name)?.complete,
  nicks: ["alice", "Albert", "bob", "ålesund"],
  conversations: ["#general", "#ops", "@bob"],
};

Deno.test("a nick at the start of a line gets ': ', elsewhere a space; case does not matter", () => {
  const completer = new Completer();
  assert.deepEqual(completer.complete("bo", 2, sources), { text: "bob: ", cursor: 5 });
  assert.deepEqual(completer.complete("hi BO", 5, sources), { text: "hi bob ", cursor: 7 });
  assert.deepEqual(completer.complete("ÅLE", 3, sources), { text: "ålesund: ", cursor: 9 });
  assert.equal(completer.complete("zed", 3, sources), undefined);
  assert.equal(completer.complete("hi ", 3, sources), undefined, "an empty word completes nothing");
});

Deno.test("several matches: Tab again goes on to the next one, in order, and round", () => {
  const completer = new Completer();
  let done = completer.complete("al", 2, sources)!;
  assert.deepEqual(done, { text: "Albert: ", cursor: 8 });
  done = completer.complete(done.text, done.cursor, sources)!;
  assert.deepEqual(done, { text: "alice: ", cursor: 7 });
  done = completer.complete(done.text, done.cursor, sources)!;
  assert.deepEqual(done, { text: "Albert: ", cursor: 8 });
  // Typed in between: a new completion.
  assert.deepEqual(completer.complete("Albert: al", 10, sources), { text: "Albert: Albert ", cursor: 15 });
});

Deno.test("completing in the middle of a line keeps what follows, without doubling a space", () => {
  const completer = new Completer();
  assert.deepEqual(completer.complete("say bo to me", 6, sources), { text: "say bob to me", cursor: 8 });
});

Deno.test("commands after a slash, and each command's argument as the table says", () => {
  const completer = new Completer();
  assert.deepEqual(completer.complete("/jo", 3, sources), { text: "/join ", cursor: 6 });
  assert.deepEqual(completer.complete("/na", 3, sources), { text: "/names ", cursor: 7 }, "aliases complete too");
  assert.deepEqual(completer.complete("/switch #o", 10, sources), { text: "/switch #ops ", cursor: 13 });
  assert.deepEqual(completer.complete("/switch @", 9, sources), { text: "/switch @bob ", cursor: 13 });
  assert.deepEqual(completer.complete("/help qui", 9, sources), { text: "/help quit ", cursor: 11 });
  assert.deepEqual(completer.complete("/me bo", 6, sources), { text: "/me bob ", cursor: 8 });
  assert.equal(completer.complete("/nick bo", 8, sources), undefined, "a new nick is not completed");
  assert.deepEqual(completer.complete("//etc bo", 8, sources), { text: "//etc bob ", cursor: 10 });
});

Deno.test("every command in the table can be completed from its first letters", () => {
  for (const command of COMMANDS) {
    const completer = new Completer();
    let done = completer.complete(`/${command.name.slice(0, 2)}`, 3, sources);
    const seen = new Set<string>();
    while (done && !seen.has(done.text)) {
      seen.add(done.text);
      done = completer.complete(done.text, done.cursor, sources);
    }
    assert.ok(seen.has(`/${command.name} `), `/${command.name}: ${[...seen]}`);
  }
});
