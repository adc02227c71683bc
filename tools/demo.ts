/**
 * `deno task demo`: the product in one command. Starts the real server on an ephemeral port with a temporary
 * database, lets two real clients in script mode converse in a passphrase room, then prints the decrypted
 * conversation next to the rows SQLite stores for it (ciphertext only), checks that no plaintext or passphrase is in
 * the database files, and removes everything it made.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { generatePassphrase } from "../lib/client/passphrase.ts";
import { clockTime } from "../lib/client/render.ts";
import { fromSource, hasJoined, type Program, received, startClient, startServer } from "./programs.ts";

const ROOM = "demo";
/** The lowest PBKDF2 count the client accepts (with --min-iterations): the demo shows the flow, not the stretching. */
const ITERATIONS = 100_000;
/**
 * Who says what. A line may depend on the last line its speaker received (decrypted by the speaker's client), so
 * the exchange only works if the messages really went through.
 */
const CONVERSATION: [speaker: "alice" | "bob", text: string | ((heard: string) => string)][] = [
  ["alice", "Morning Bob! The release is tagged: v0.1.0."],
  ["bob", (heard) => `Great, ${/v\d+\.\d+\.\d+/.exec(heard)?.[0] ?? "(no tag heard)"} it is. Staging after lunch.`],
  ["alice", "The staging database password is in the vault, entry 'staging-db'."],
  [
    "bob",
    (heard) => `Got it: ${/entry '([^']+)'/.exec(heard)?.[1] ?? "(no entry heard)"}. I will post when it is live.`,
  ],
];

/** Aborted by Ctrl-C: every wait stops at once and the cleanup runs. */
const interrupted = new AbortController();

function clip(text: string, width: number): string {
  return text.length <= width ? text.padEnd(width) : text.slice(0, width - 1) + "…";
}

async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-demo-" });
  const db = `${dir}/aeschat.db`;
  const passphrase = generatePassphrase();
  const programs: Program[] = [];
  const onInterrupt = () => {
    interrupted.abort();
    for (const program of programs) program.kill();
  };
  try {
    Deno.addSignalListener("SIGINT", onInterrupt);
  } catch {
    // No SIGINT listener on this platform: Ctrl-C then ends the demo without its cleanup.
  }
  try {
    console.log(`aeschat demo: temporary directory ${dir}`);
    const launch = fromSource();
    const { program: server, port } = await startServer(launch, { db, signal: interrupted.signal });
    programs.push(server);
    console.log(`server:  ${server.stdout.split("\n")[0]}`);
    console.log(`room #${ROOM}, passphrase generated for this run (given to both clients in AESCHAT_PASSPHRASE)\n`);

    const start = async (nick: string) => {
      const home = `${dir}/${nick}`;
      await Deno.mkdir(home, { mode: 0o700 });
      const program = startClient(launch, {
        port,
        nick,
        room: ROOM,
        passphrase,
        home,
        iterations: ITERATIONS,
        signal: interrupted.signal,
      });
      programs.push(program);
      return program;
    };
    const clients = { alice: await start("alice") } as Record<"alice" | "bob", Program>;
    await clients.alice.until(() => hasJoined(clients.alice, ROOM), "alice to create the room");
    clients.bob = await start("bob");
    await clients.bob.until(() => hasJoined(clients.bob, ROOM), "bob to join");

    // Each line is said only once the previous one has reached the other side: a real exchange.
    const said: string[] = [];
    for (const [speaker, line] of CONVERSATION) {
      const listener = clients[speaker === "alice" ? "bob" : "alice"];
      const text = typeof line === "string" ? line : line(received(clients[speaker]).at(-1)?.text ?? "");
      await clients[speaker].say(text);
      await listener.until(() => received(listener).some((m) => m.text === text), `"${text}" to arrive`);
      said.push(text);
    }
    for (const [nick, program] of Object.entries(clients)) {
      const status = await program.finish();
      if (!status.success) throw new Error(`${nick}'s client exited with ${status.code}:\n${program.stderr}`);
    }

    const shown = [...received(clients.alice), ...received(clients.bob)].sort((a, b) => a.seq - b.seq);
    console.log("What the clients showed (decrypted on each client):");
    for (const m of shown) {
      console.log(`  #${m.seq}  ${clockTime(m.ts)} <${m.from}> ${m.text}`);
    }

    // The server holds its database exclusively while it runs: stop it, then read what it stored.
    server.child.kill("SIGTERM");
    const status = await server.done;
    if (!status.success) throw new Error(`the server exited with ${status.code}:\n${server.stderr}`);
    const sqlite = new DatabaseSync(db, { readOnly: true });
    const rows = sqlite.prepare("SELECT seq, room, sender, msg_id, envelope FROM messages ORDER BY seq").all() as {
      seq: number;
      room: string;
      sender: string;
      msg_id: Uint8Array;
      envelope: string;
    }[];
    sqlite.close();
    console.log("\nThe same messages as SQLite stores them (table messages):");
    console.log(`  ${"seq".padEnd(4)} ${"room".padEnd(6)} ${"sender".padEnd(7)} ${"msg_id".padEnd(14)} envelope.ct`);
    for (const row of rows) {
      const ct = JSON.parse(row.envelope).ct as string;
      console.log(
        `  ${String(row.seq).padEnd(4)} ${row.room.padEnd(6)} ${row.sender.padEnd(7)} ${clip(row.msg_id.toHex(), 14)} ${
          clip(ct, 60)
        }`,
      );
    }
    if (rows.length !== CONVERSATION.length) {
      throw new Error(`expected ${CONVERSATION.length} stored messages, found ${rows.length}`);
    }

    const bytes = new TextDecoder("latin1").decode(
      new Uint8Array(
        (await Promise.all(
          [db, `${db}-wal`].map((f) => Deno.readFile(f).catch(() => new Uint8Array(0))),
        )).flatMap((b) => [...b]),
      ),
    );
    const leaked = [...said, passphrase].filter((secret) => bytes.includes(secret));
    if (leaked.length > 0) throw new Error(`plaintext found in the database: ${leaked.join(" | ")}`);
    console.log(
      `\nno plaintext in the database: checked (the ${said.length} lines and the passphrase, in aeschat.db and -wal)`,
    );
  } finally {
    try {
      Deno.removeSignalListener("SIGINT", onInterrupt);
    } catch {
      // never added
    }
    for (const program of programs) program.kill();
    await Promise.all(programs.map((p) => p.done.catch(() => {})));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    console.log(`removed ${dir}`);
  }
}

if (import.meta.main) {
  if (Deno.args.length > 0) {
    console.error(`aeschat demo: takes no arguments (got ${Deno.args.join(" ")}); run: deno task demo`);
    Deno.exit(2);
  }
  try {
    await main();
  } catch (err) {
    console.error(`aeschat demo failed: ${err instanceof Error ? err.message : String(err)}`);
    Deno.exit(1);
  }
}
