/**
 * `deno task bench`: measures the real server the way a chat operator would, next to a bare relay under the same
 * load, and writes bench/results.json.
 *
 * For every run a fresh server process (the exact `deno task server` command, on --port 0 with a temporary
 * database whose server key the benchmark fixed beforehand, so that messages sealed once serve every run) or a fresh
 * bench/relay.ts process is started, the rooms are created once with a real join proof (PBKDF2 100000 iterations),
 * and load-worker processes (bench/load.ts) connect their share of the clients, log in with their identity keys,
 * join with real proofs and send protocol v2 messages signed and sealed with lib/message.ts, open-loop: no sender
 * waits for an ack or holds back to stay under a limit, every receiver reads as fast as it can, and a client cut off,
 * a message never acked and a delivery that never arrives are all loss, which fails the run (exit 1). The burst
 * scenarios run the server on its default flags. Server CPU comes from /proc/PID/stat (user + system, all threads)
 * over the sending phase, memory from VmHWM, and stored messages are counted in the database afterwards. join-50 also
 * times the login (hello to welcome, first and again) with its server CPU. Each scenario runs 3 times per target,
 * alternating targets; the table shows medians.
 *
 * Flags: --quick (a subset, one run each, under a minute), --runs N, --only NAME[,NAME], --workers N (default 2, 4
 * from 300 clients), --duration SECONDS, --synchronous full|normal (passed to the server), --target
 * aeschat|relay|both, --out FILE, --profile DIR (V8 CPU profiles of the server, relay and load workers; summarize with
 * bench/cpu_profile.ts), --chunk N (flood: messages per write, default 16), --steady-rate N (deliveries/s, default
 * 100000), --server-v8-flags FLAGS (an experiment), --verbose.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { deriveRoomKeys, importEd25519Seed, makeSalt, type RoomKeys } from "../lib/crypto.ts";
import { encodeMessage } from "../lib/frame.ts";
import { sealRoomMessage } from "../lib/message.ts";
import { Store } from "../lib/server/store.ts";
import { testIdentity } from "../tests/support/wire.ts";
import { BenchClient, clock } from "./bench_client.ts";
import { Histogram } from "./histogram.ts";
import type { LoadClient, LoadConfig } from "./load.ts";
import { benchDevice, type ClientPool, sealPool } from "./pool.ts";
import { Child, machineBusy, openFileLimit, ROOT, sampleProcesses, serverTaskArgs, stopAll } from "./processes.ts";

/** Flags the server runs with in the benchmark, and why. */
const SERVER_BENCH_FLAGS = [
  "--rate",
  "0", // no per-connection rate limit: the load is the point
  "--max-connections",
  "6000", // the idle scenario holds 5000 clients
  "--log-level",
  "warn", // no line per connect/join
  "--idle-timeout",
  "3600", // silent benchmark clients must not be cut
  "--handshake-timeout",
  "120", // 5000 clients joining through two workers take a while
  "--room-create-rate",
  "0", // the 100 rooms of two scenarios are created from one connection
];
const PASSPHRASE = "benchmark passphrase, not a secret";
/** The server key of every benchmark database: messages sign the server key, so pools sealed once serve every run. */
const BENCH_SERVER_SEED = new Uint8Array(32).fill(0x5e);
const ITERATIONS = 100_000;
const JOIN_HISTORY = 50;
const JOINERS = 100;

type Mode = "flood" | "steady" | "burst" | "idle" | "join";
type Target = "aeschat" | "relay";

interface Scenario {
  name: string;
  mode: Mode;
  rooms: number;
  clients: number;
  /** "bench": SERVER_BENCH_FLAGS; "default": the server's own defaults, as a user runs it. */
  flags?: "bench" | "default";
}

/** Messages each client of a burst scenario writes at once (the default --burst). */
const BURST = 40;
/** The memory bound README states for 500 clients each writing a burst of 40 (server on its default flags). */
const BURST_500_RSS_MB = 300;

const FULL: Scenario[] = [
  { name: "flood-10", mode: "flood", rooms: 1, clients: 10 },
  { name: "flood-100", mode: "flood", rooms: 1, clients: 100 },
  { name: "flood-500", mode: "flood", rooms: 1, clients: 500 },
  { name: "steady-10", mode: "steady", rooms: 1, clients: 10 },
  { name: "steady-100", mode: "steady", rooms: 1, clients: 100 },
  { name: "steady-500", mode: "steady", rooms: 1, clients: 500 },
  { name: "rooms-100x10", mode: "steady", rooms: 100, clients: 1000 },
  { name: "idle-5000", mode: "idle", rooms: 100, clients: 5000 },
  { name: "join-50", mode: "join", rooms: 1, clients: JOINERS },
  { name: "burst-100", mode: "burst", rooms: 1, clients: 100, flags: "default" },
  { name: "burst-500", mode: "burst", rooms: 1, clients: 500, flags: "default" },
];
const QUICK = ["flood-100", "steady-10", "idle-1000", "join-50", "burst-100"];

/** The figures of one run. */
interface RunResult {
  target: Target;
  deliveriesPerS: number | null;
  cpuUsPerDelivery: number | null;
  serverCpuPct: number;
  loadCpuPct: number;
  /** CPU the rest of the machine used meanwhile (other programs, and kernel work not charged to a process). */
  otherCpuPct: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
  peakRssMb: number;
  rssMb: number;
  sent: number;
  acked: number;
  stored: number | null;
  delivered: number;
  lost: number;
  dropped: number;
  unacked: number;
  exhausted: number;
  opened: number;
  openFailed: number;
  lagP99Ms: number | null;
  setupMs: number;
  joinCpuMs?: number;
  /** join-50: the opening (hello to welcome), first (registering the nick) and again, and its server CPU. */
  login?: {
    firstP50Ms: number;
    firstP99Ms: number;
    firstCpuMs: number;
    againP50Ms: number;
    againP99Ms: number;
    againCpuMs: number;
  };
  notes: string[];
}

const USAGE = `usage: deno task bench [options]
  --quick                 a subset, once (under a minute)
  --only LIST             comma-separated scenarios (e.g. flood-500,burst-100)
  --runs N                runs per scenario (default 3; the median is reported)
  --workers N|auto        load processes
  --duration SECONDS      length of the flood and steady scenarios
  --synchronous MODE      the server's --synchronous
  --out FILE              where the results go (default bench/results.json)
  --target both|aeschat|relay
  --profile DIR           write the server's CPU profiles to DIR
  --chunk N               messages per flood write (default 16)
  --steady-rate N         steady deliveries per second in total (default 100000)
  --server-v8-flags FLAGS V8 flags for the server process (an experiment)
  --verbose               every load process's lines`;

function parseFlags() {
  try {
    return parseArgs({
      args: Deno.args,
      options: {
        help: { type: "boolean", default: false },
        quick: { type: "boolean", default: false },
        runs: { type: "string" },
        only: { type: "string" },
        workers: { type: "string", default: "auto" },
        duration: { type: "string" },
        synchronous: { type: "string" },
        out: { type: "string", default: `${ROOT}bench/results.json` },
        verbose: { type: "boolean", default: false },
        target: { type: "string", default: "both" },
        profile: { type: "string" },
        chunk: { type: "string", default: "16" },
        "server-v8-flags": { type: "string" },
        "steady-rate": { type: "string", default: "100000" },
      },
    }).values;
  } catch (err) {
    console.error(`aeschat bench: ${(err as Error).message.split("\n")[0]} (deno task bench --help)`);
    Deno.exit(2);
  }
}

const flags = parseFlags();
if (flags.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const QUICK_MODE = flags.quick!;
/** Steady: deliveries per second in total (issue 5: about 100000). */
const STEADY_DELIVERIES_PER_S = Number(flags["steady-rate"]);
/** V8 flags for the server process (an experiment: `deno task server` itself has none). */
const SERVER_V8_FLAGS = flags["server-v8-flags"];
/** The server's deno arguments: exactly those of `deno task server`, unless --server-v8-flags asks otherwise. */
function serverArgs(): string[] {
  const args = serverTaskArgs();
  return SERVER_V8_FLAGS ? [args[0], `--v8-flags=${SERVER_V8_FLAGS}`, ...args.slice(1)] : args;
}
/** Flood: messages per write of each sender. */
const CHUNK = Number(flags.chunk);
const RUNS = Number(flags.runs ?? (QUICK_MODE ? 1 : 3));
/**
 * Load worker processes per run: by default 2, and 4 from 300 clients up, because one process reading a few hundred
 * busy sockets leaves some of them unread for seconds (measured: up to 8 s with 250 each under the 500-client flood;
 * 1 s with 125 each), which the server rightly takes for readers that do not keep up.
 */
const WORKERS = flags.workers === "auto" ? undefined : Number(flags.workers);
function workersFor(s: Scenario): number {
  return Math.min(WORKERS ?? (s.clients >= 300 ? 4 : 2), s.clients);
}
const DURATION_S = Number(flags.duration ?? (QUICK_MODE ? 1.5 : 4));
const TARGETS: Target[] = flags.target === "both" ? ["aeschat", "relay"] : [flags.target as Target];
const serverFlags = [...SERVER_BENCH_FLAGS, ...(flags.synchronous ? ["--synchronous", flags.synchronous] : [])];
/** The burst scenarios: the server exactly as a user starts it (only --synchronous, when given to the benchmark). */
const defaultFlags = flags.synchronous ? ["--synchronous", flags.synchronous] : [];

function verbose(text: string): void {
  if (flags.verbose) console.error(`  ${text}`);
}

function scenarioByName(name: string): Scenario {
  const known = FULL.find((s) => s.name === name);
  if (known) return known;
  const idle = /^idle-(\d+)$/.exec(name);
  if (idle) {
    return { name, mode: "idle", rooms: Math.max(1, Math.round(Number(idle[1]) / 50)), clients: Number(idle[1]) };
  }
  console.error(`aeschat bench: unknown scenario ${name}; known: ${FULL.map((s) => s.name).join(", ")}, idle-N`);
  Deno.exit(2);
}

const selected: Scenario[] = flags.only
  ? flags.only.split(",").map(scenarioByName)
  : QUICK_MODE
  ? QUICK.map(scenarioByName)
  : FULL;

// Every room is created with the same passphrase and salt, so each process derives the keys once.
const salt = makeSalt();
const keys: RoomKeys = await deriveRoomKeys(PASSPHRASE, { salt, iterations: ITERATIONS });
const benchServerPub = (await importEd25519Seed(BENCH_SERVER_SEED)).publicKey;
const pools = new Map<string, ClientPool>();

/** The room instance benchmark messages are signed for. */
function contextOf(room: string) {
  return { serverPub: benchServerPub, room, accessPub: keys.accessPub, epoch: 0 };
}

/** A new database for one run, with the benchmark's server key (made as the server makes it, then the seed set). */
function prepareDatabase(db: string): void {
  Store.open(db).close();
  const database = new DatabaseSync(db);
  try {
    database.prepare("UPDATE meta SET value = ? WHERE key = 'server_seed'").run(BENCH_SERVER_SEED);
  } finally {
    database.close();
  }
}

function roomName(s: Scenario, r: number): string {
  return s.rooms === 1 ? "bench" : `bench-${r}`;
}

function clientsOf(s: Scenario): { index: number; nick: string; room: string }[] {
  const perRoom = s.clients / s.rooms;
  return Array.from({ length: s.clients }, (_, i) => {
    const r = Math.floor(i / perRoom);
    return { index: i, nick: s.rooms === 1 ? `c${i}` : `r${r}c${i % perRoom}`, room: roomName(s, r) };
  });
}

function membersPerRoom(s: Scenario): number {
  return s.clients / s.rooms;
}

function steadyRatePerClient(s: Scenario): number {
  // Total deliveries/s = messages/s * (members - 1), spread evenly over the senders.
  const messagesPerS = STEADY_DELIVERIES_PER_S / (membersPerRoom(s) - 1);
  return messagesPerS / s.clients;
}

function poolSize(s: Scenario): number {
  if (s.mode === "burst") return BURST;
  if (s.mode === "steady") return Math.ceil(steadyRatePerClient(s) * DURATION_S * 1.3) + 8;
  // Flood: enough for the fastest server we expect; a client that runs out simply stops early (counted).
  const messagesPerS = Math.min(80_000, 5_000_000 / (s.clients - 1));
  return Math.ceil((messagesPerS * DURATION_S) / s.clients) + 16;
}

async function ensurePools(s: Scenario): Promise<void> {
  if (s.mode !== "flood" && s.mode !== "steady" && s.mode !== "burst") return;
  const need = poolSize(s);
  const started = performance.now();
  let sealed = 0;
  for (const c of clientsOf(s)) {
    const key = `${c.room}\0${c.nick}\0${c.index}`;
    const have = pools.get(key);
    if (have && have.count >= need) continue;
    pools.set(
      key,
      await sealPool(keys, {
        context: contextOf(c.room),
        nick: c.nick,
        identity: await testIdentity(c.nick),
        client: c.index,
        count: need,
        from: have,
      }),
    );
    sealed += need - (have?.count ?? 0);
  }
  if (sealed > 0) verbose(`sealed ${sealed} envelopes in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

async function startTarget(
  target: Target,
  options: { db: string; openFiles: number; defaults?: boolean },
): Promise<{ child: Child; port: number }> {
  if (target === "aeschat") prepareDatabase(options.db);
  const args = target === "aeschat"
    ? [...serverArgs(), "--port", "0", "--db", options.db, ...(options.defaults ? defaultFlags : serverFlags)]
    : ["run", "-q", "--allow-net", `${ROOT}bench/relay.ts`, "--port", "0"];
  // --profile DIR: V8 CPU profiles of the server and relay (and the load workers), written when they exit.
  if (flags.profile) args.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${flags.profile}/${target}`);
  const child = new Child(args, { openFiles: options.openFiles });
  const line = await child.line((l) => / listening on /.test(l), { timeoutMs: 30_000, what: "the listening line" });
  return { child, port: Number(/:(\d+)(?: |$)/.exec(line)![1]) };
}

async function createRooms(port: number, rooms: string[]): Promise<void> {
  const admin = await BenchClient.connect(port);
  await admin.hello("bench-admin");
  for (const room of rooms) {
    await admin.join(room, { keys, nick: "bench-admin", create: { salt, iterations: ITERATIONS } });
    // The 100 rooms of two scenarios are made from this one connection: leave each, or it would hold more than
    // --max-rooms-per-connection.
    await admin.part(room);
  }
  admin.send({ type: "bye" });
  await new Promise((resolve) => setTimeout(resolve, 50));
  admin.close();
  await admin.ended;
}

function countStored(db: string): number {
  const database = new DatabaseSync(db, { readOnly: true });
  try {
    const row = database.prepare("SELECT count(*) AS n, count(DISTINCT room || ':' || hex(msg_id)) AS d FROM messages")
      .get() as { n: number; d: number };
    if (Number(row.n) !== Number(row.d)) throw new Error(`stored ${row.n} rows but ${row.d} distinct ids`);
    return Number(row.n);
  } finally {
    database.close();
  }
}

function median(values: (number | null)[]): number | null {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

async function runLoad(s: Scenario, target: Target, dir: string): Promise<RunResult> {
  const db = `${dir}/aeschat.db`;
  const { child: server, port } = await startTarget(target, {
    db,
    openFiles: s.clients + 64,
    defaults: s.flags === "default",
  });
  const workers: Child[] = [];
  const notes: string[] = [];
  try {
    const rooms = [...new Set(clientsOf(s).map((c) => c.room))];
    await createRooms(port, rooms);
    const all = clientsOf(s);
    const stride = s.mode === "idle" ? 1 : poolSize(s);
    const nWorkers = workersFor(s);
    const roomSenders: Record<string, number[]> = {};
    if (s.mode !== "idle") { for (const c of all) (roomSenders[c.room] ??= []).push(c.index); }
    for (let w = 0; w < nWorkers; w++) {
      const mine = all.filter((c) => c.index % nWorkers === w);
      const specs: LoadClient[] = [];
      const chunks: Uint8Array[] = [];
      let offset = 0;
      for (const c of mine) {
        const pool = s.mode === "idle" ? undefined : pools.get(`${c.room}\0${c.nick}\0${c.index}`)!;
        const count = pool ? stride : 0;
        specs.push({
          ...c,
          poolOffset: pool ? offset : -1,
          poolCount: count,
          frameLength: pool?.frameLength ?? 0,
        });
        if (pool) {
          chunks.push(pool.bytes.subarray(0, count * pool.frameLength));
          offset += count * pool.frameLength;
        }
      }
      const poolFile = `${dir}/pool-${w}.bin`;
      const file = await Deno.open(poolFile, { write: true, create: true, truncate: true });
      for (const chunk of chunks) {
        let at = 0;
        while (at < chunk.length) at += await file.write(chunk.subarray(at));
      }
      file.close();
      const config: LoadConfig = {
        port: port,
        worker: w,
        passphrase: PASSPHRASE,
        serverPub: benchServerPub.toBase64(),
        salt: salt.toBase64(),
        iterations: ITERATIONS,
        stride,
        totalClients: s.clients,
        mode: s.mode === "join" ? "idle" : s.mode,
        chunk: CHUNK,
        ratePerClient: s.mode === "steady" ? steadyRatePerClient(s) : 0,
        sampleEvery: 1000,
        readBytes: mine.length > 1000 ? 4096 : 65536,
        connectConcurrency: 32,
        poolFile,
        sendsFile: `${dir}/sends-${w}.bin`,
        clients: specs,
        roomSenders,
      };
      await Deno.writeTextFile(`${dir}/load-${w}.json`, JSON.stringify(config));
      workers.push(
        new Child([
          "run",
          "-q",
          "--allow-net",
          "--allow-read",
          "--allow-write",
          ...(flags.profile ? ["--cpu-prof", `--cpu-prof-dir=${flags.profile}/load-${target}`] : []),
          `${ROOT}bench/load.ts`,
          `${dir}/load-${w}.json`,
        ], {
          openFiles: mine.length + 64,
          stdin: true,
        }),
      );
    }
    const ready = await Promise.all(workers.map((w) => w.event("ready", { timeoutMs: 180_000 })));
    const setupMs = Math.max(...ready.map((r) => Number(r.setupMs)));
    verbose(`${target}: ${s.clients} clients joined in ${setupMs.toFixed(0)} ms`);

    const pids = [server.pid, ...workers.map((w) => w.pid)];
    const before = await sampleProcesses(pids);
    const busy0 = await machineBusy();
    const t0 = clock();
    const cpuOf = (samples: { cpu: number }[]) => ({
      server: samples[0].cpu,
      load: samples.slice(1).reduce((n, x) => n + x.cpu, 0),
    });
    const cpu0 = cpuOf(before);
    if (s.mode === "idle") {
      await new Promise((resolve) => setTimeout(resolve, DURATION_S * 1000));
      const after = await sampleProcesses(pids);
      const busy1 = await machineBusy();
      const cpu1 = cpuOf(after);
      const wall = (clock() - t0) / 1000;
      const other = busy1 - busy0 - (cpu1.server - cpu0.server) - (cpu1.load - cpu0.load);
      return {
        target,
        deliveriesPerS: null,
        cpuUsPerDelivery: null,
        serverCpuPct: ((cpu1.server - cpu0.server) / wall) * 100,
        loadCpuPct: ((cpu1.load - cpu0.load) / wall) * 100,
        otherCpuPct: (other / wall) * 100,
        p50: null,
        p99: null,
        max: null,
        peakRssMb: after[0].peakMb,
        rssMb: after[0].rssMb,
        sent: 0,
        acked: 0,
        stored: null,
        delivered: 0,
        lost: 0,
        dropped: 0,
        unacked: 0,
        exhausted: 0,
        opened: 0,
        openFailed: 0,
        lagP99Ms: null,
        setupMs,
        notes: [`${s.clients} clients joined in ${(setupMs / 1000).toFixed(1)} s`],
      };
    }

    for (const w of workers) await w.command({ cmd: "go" });
    const going = await Promise.all(workers.map((w) => w.event("going")));
    const goAt = Math.min(...going.map((g) => Number(g.at)));
    // A burst is written at "go"; the other modes send for DURATION_S. Then every message must be answered.
    if (s.mode !== "burst") await new Promise((resolve) => setTimeout(resolve, DURATION_S * 1000));
    for (const w of workers) await w.command({ cmd: "stop", drainMs: 60_000 });
    const drained = await Promise.all(workers.map((w) => w.event("drained", { timeoutMs: 90_000 })));
    const acked: number[] = new Array(s.clients).fill(0);
    let sent = 0;
    let ackedTotal = 0;
    for (const d of drained) {
      for (const [index, nSent, nAcked] of d.clients as number[][]) {
        acked[index] = nAcked;
        sent += nSent;
        ackedTotal += nAcked;
      }
    }
    const rejected = drained.reduce((n, d) => n + Number(d.rejected), 0);
    const unanswered = drained.reduce((n, d) => n + Number(d.unanswered), 0);
    const codes = [...new Set(drained.flatMap((d) => d.errorCodes as string[]))];
    if (rejected > 0) notes.push(`${rejected} messages refused: ${codes}`);
    else if (codes.length > 0) notes.push(`notices: ${codes}`);
    if (unanswered > 0) notes.push(`${unanswered} messages never acked`);
    const gap = Math.max(...drained.map((d) => Number(d.maxReadGapMs ?? 0)));
    if (gap >= 500) notes.push(`a receiver went ${(gap / 1000).toFixed(1)} s without a read`);
    for (const w of workers) await w.command({ cmd: "expect", acked, timeoutMs: 30_000 });
    const received = await Promise.all(workers.map((w) => w.event("received", { timeoutMs: 90_000 })));
    const after = await sampleProcesses(pids);
    const busy1 = await machineBusy();
    const t1 = clock();
    const cpu1 = cpuOf(after);
    const sum = (key: string) => received.reduce((n, r) => n + Number(r[key]), 0);
    const delivered = sum("delivered");
    const lastRecvAt = Math.max(...received.map((r) => Number(r.lastRecvAt)));
    const missing = sum("missing");
    const duplicates = sum("duplicates");
    const extra = sum("extra");
    const dropped = sum("dropped");
    const unreadable = sum("unreadable");
    if (missing) notes.push(`${missing} acked deliveries missing`);
    if (duplicates) notes.push(`${duplicates} duplicate deliveries`);
    if (extra) notes.push(`${extra} deliveries of unacked messages`);
    if (dropped) notes.push(`${dropped} clients cut off`);
    if (unreadable) notes.push(`${unreadable} unreadable deliveries`);
    const exhausted = drained.reduce((n, d) => n + Number(d.exhausted), 0);
    if (exhausted > 0 && s.mode === "flood") notes.push(`${exhausted} clients used their whole pool`);

    for (const w of workers) await w.command({ cmd: "sends" });
    await Promise.all(workers.map((w) => w.event("sendsWritten")));
    const files = workers.map((_, i) => `${dir}/sends-${i}.bin`);
    for (const w of workers) await w.command({ cmd: "analyze", files });
    const latencies = await Promise.all(workers.map((w) => w.event("latency", { timeoutMs: 120_000 })));
    const hist = new Histogram();
    for (const l of latencies) hist.merge(l.hist as { buckets: [number, number][]; total: number; max: number });
    const unmatched = latencies.reduce((n, l) => n + Number(l.unmatched), 0);
    if (unmatched) notes.push(`${unmatched} deliveries without a send time`);
    for (const w of workers) await w.command({ cmd: "exit" });
    await Promise.all(workers.map((w) => w.stop("SIGTERM", { graceMs: 5000 })));
    workers.length = 0;
    await server.stop("SIGTERM", { graceMs: 10_000 });
    // Why the server cut clients off, in its own words (the first few lines).
    const cuts = server.warnings.filter((l) => /limit=send_queue/.test(l));
    if (cuts.length > 0) notes.push(`server: ${cuts.slice(0, 3).map((l) => l.replace(/^\S+ +/, "")).join(" | ")}`);
    const stored = target === "aeschat" ? countStored(db) : null;
    // Open-loop: a message refused or never acked is lost as surely as a delivery that never arrives.
    const lost = missing + duplicates + extra + rejected + unanswered +
      (stored === null ? 0 : Math.abs(stored - ackedTotal));
    if (s.mode === "burst") notes.push(`burst delivered in ${((lastRecvAt - goAt) / 1000).toFixed(2)} s`);
    if (stored !== null && stored !== ackedTotal) notes.push(`stored ${stored} != acked ${ackedTotal}`);
    const wall = (t1 - t0) / 1000;
    const lags = drained.map((d) => d.lagP99Ms as number | null).filter((v) => v !== null) as number[];
    return {
      target,
      deliveriesPerS: delivered / ((lastRecvAt - goAt) / 1000),
      cpuUsPerDelivery: delivered > 0 ? ((cpu1.server - cpu0.server) * 1e6) / delivered : null,
      serverCpuPct: ((cpu1.server - cpu0.server) / wall) * 100,
      loadCpuPct: ((cpu1.load - cpu0.load) / wall) * 100,
      otherCpuPct: ((busy1 - busy0 - (cpu1.server - cpu0.server) - (cpu1.load - cpu0.load)) / wall) * 100,
      p50: hist.quantile(0.5) / 1000,
      p99: hist.quantile(0.99) / 1000,
      max: hist.quantile(1) / 1000,
      peakRssMb: after[0].peakMb,
      rssMb: after[0].rssMb,
      sent,
      acked: ackedTotal,
      stored,
      delivered,
      lost,
      dropped,
      unacked: sent - ackedTotal,
      exhausted,
      opened: sum("opened"),
      openFailed: sum("openFailed"),
      lagP99Ms: lags.length > 0 ? Math.max(...lags) : null,
      setupMs,
      notes,
    };
  } finally {
    for (const w of workers) await w.stop("SIGTERM", { graceMs: 3000 }).catch(() => {});
    await server.stop("SIGTERM", { graceMs: 5000 }).catch(() => {});
  }
}

/**
 * join-50: a room with 50 messages; clients log in and join one after another. Measured apart: the opening (hello to
 * welcome; a first login registers the nick, which is a write to the database), the same clients logging in again
 * (nothing to write), and the join (prove to joined, with 50 history messages); with the server CPU of each phase.
 */
async function runJoin(dir: string): Promise<RunResult> {
  const db = `${dir}/aeschat.db`;
  const { child: server, port } = await startTarget("aeschat", { db, openFiles: 2 * JOINERS + 64 });
  const notes: string[] = [];
  try {
    await createRooms(port, ["bench"]);
    const writer = await BenchClient.connect(port);
    await writer.hello("writer");
    await writer.join("bench", { keys, nick: "writer" });
    const device = benchDevice(0);
    for (let i = 0; i < JOIN_HISTORY; i++) {
      const envelope = await sealRoomMessage(keys, {
        context: contextOf("bench"),
        from: "writer",
        identity: writer.identity!,
        content: { type: "text", body: `history message ${i} `.padEnd(64, ".") },
        sequence: { device, n: i + 1, acked: i, void: [] },
      });
      writer.write(encodeMessage({ type: "send", envelope }));
      const ack = await writer.next(["ack", "error"]);
      if (ack.type !== "ack") throw new Error(`history message refused: ${JSON.stringify(ack)}`);
    }
    const cpuNow = async () => (await sampleProcesses([server.pid]))[0].cpu;
    // The identities are made before the clock starts: that is the client's work, not the server's.
    for (let i = 0; i < JOINERS; i++) await testIdentity(`j${i}`);
    const timeLogins = async (label: string) => {
      const hist = new Histogram();
      const clients: BenchClient[] = [];
      const cpu0 = await cpuNow();
      for (let i = 0; i < JOINERS; i++) {
        const c = await BenchClient.connect(port);
        clients.push(c);
        const t = clock();
        const welcome = await c.hello(`j${i}`);
        hist.record((clock() - t) * 1000);
        if (welcome.registered !== (label === "first")) {
          notes.push(`${label} login ${i}: registered ${welcome.registered}`);
        }
      }
      return { clients, hist, cpuMs: ((await cpuNow()) - cpu0) * 1000 / JOINERS };
    };
    const first = await timeLogins("first");
    for (const c of first.clients) c.close();
    await Promise.all(first.clients.map((c) => c.ended));
    const again = await timeLogins("again");
    const hist = new Histogram();
    const cpu0 = await cpuNow();
    const t0 = clock();
    for (const [i, c] of again.clients.entries()) {
      const challenge = await c.challenge("bench");
      const prove = await c.proof(challenge, { keys, nick: `j${i}` });
      const sentAt = clock();
      c.send(prove);
      const joined = await c.next(["joined", "error"]);
      hist.record((clock() - sentAt) * 1000);
      if (joined.type !== "joined") throw new Error(`join refused: ${JSON.stringify(joined)}`);
      if (joined.history.length !== JOIN_HISTORY) {
        notes.push(`joined carried ${joined.history.length} history messages`);
      }
    }
    const [after] = await sampleProcesses([server.pid]);
    const cpu = after.cpu - cpu0;
    const wall = (clock() - t0) / 1000;
    for (const c of again.clients) c.close();
    writer.close();
    await server.stop("SIGTERM", { graceMs: 10_000 });
    const stored = countStored(db);
    const ms = (h: Histogram, q: number) => h.quantile(q) / 1000;
    return {
      target: "aeschat",
      deliveriesPerS: null,
      cpuUsPerDelivery: null,
      serverCpuPct: (cpu / wall) * 100,
      loadCpuPct: NaN,
      otherCpuPct: NaN,
      p50: hist.quantile(0.5) / 1000,
      p99: hist.quantile(0.99) / 1000,
      max: hist.quantile(1) / 1000,
      peakRssMb: after.peakMb,
      rssMb: after.rssMb,
      sent: JOIN_HISTORY,
      acked: JOIN_HISTORY,
      stored,
      delivered: JOINERS * JOIN_HISTORY,
      lost: Math.abs(stored - JOIN_HISTORY) + (notes.length > 0 ? 1 : 0),
      dropped: 0,
      unacked: 0,
      exhausted: 0,
      opened: 0,
      openFailed: 0,
      lagP99Ms: null,
      setupMs: 0,
      joinCpuMs: (cpu * 1000) / JOINERS,
      login: {
        firstP50Ms: ms(first.hist, 0.5),
        firstP99Ms: ms(first.hist, 0.99),
        firstCpuMs: first.cpuMs,
        againP50Ms: ms(again.hist, 0.5),
        againP99Ms: ms(again.hist, 0.99),
        againCpuMs: again.cpuMs,
      },
      notes,
    };
  } finally {
    await server.stop("SIGTERM", { graceMs: 5000 }).catch(() => {});
  }
}

interface Summary {
  scenario: Scenario;
  aeschat: RunResult[];
  relay: RunResult[];
}

function summarize(runs: RunResult[]): Record<string, number | null> {
  const m = (f: (r: RunResult) => number | null) => median(runs.map(f));
  return {
    deliveriesPerS: m((r) => r.deliveriesPerS),
    cpu: m((r) => r.cpuUsPerDelivery),
    serverCpuPct: m((r) => r.serverCpuPct),
    loadCpuPct: m((r) => r.loadCpuPct),
    otherCpuPct: m((r) => r.otherCpuPct),
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    max: m((r) => r.max),
    peakRssMb: m((r) => r.peakRssMb),
    rssMb: m((r) => r.rssMb),
    sent: m((r) => r.sent),
    acked: m((r) => r.acked),
    stored: m((r) => r.stored),
    delivered: m((r) => r.delivered),
    // Loss is summed over runs: it must be 0 in every one of them.
    lost: runs.reduce((n, r) => n + r.lost, 0),
    dropped: runs.reduce((n, r) => n + r.dropped, 0),
    openFailed: runs.reduce((n, r) => n + r.openFailed, 0),
    opened: runs.reduce((n, r) => n + r.opened, 0),
    lagP99Ms: m((r) => r.lagP99Ms),
    joinCpuMs: m((r) => r.joinCpuMs ?? null),
    loginFirstP50: m((r) => r.login?.firstP50Ms ?? null),
    loginFirstP99: m((r) => r.login?.firstP99Ms ?? null),
    loginFirstCpuMs: m((r) => r.login?.firstCpuMs ?? null),
    loginAgainP50: m((r) => r.login?.againP50Ms ?? null),
    loginAgainP99: m((r) => r.login?.againP99Ms ?? null),
    loginAgainCpuMs: m((r) => r.login?.againCpuMs ?? null),
    setupMs: m((r) => r.setupMs),
  };
}

function fmt(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "-";
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function round(v: number | null, digits: number): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function printTable(summaries: Summary[]): void {
  const header = [
    "scenario",
    "target",
    "deliveries/s",
    "cpu µs/del",
    "ratio",
    "p50 ms",
    "p99 ms",
    "max ms",
    "peak MB",
    "sent",
    "acked",
    "stored",
    "delivered",
    "lost",
    "srv cpu%",
    "load cpu%",
    "other%",
  ];
  const rows: string[][] = [header];
  for (const s of summaries) {
    const relay = s.relay.length > 0 ? summarize(s.relay) : undefined;
    for (const [target, runs] of [["aeschat", s.aeschat], ["relay", s.relay]] as const) {
      if (runs.length === 0) continue;
      const x = summarize(runs);
      const ratio = target === "aeschat" && relay?.cpu && x.cpu ? x.cpu / relay.cpu : null;
      rows.push([
        target === "aeschat" || s.aeschat.length === 0 ? s.scenario.name : "",
        target,
        fmt(x.deliveriesPerS),
        fmt(x.cpu, 3),
        ratio === null ? "" : `${fmt(ratio, 2)}x`,
        fmt(x.p50, 2),
        fmt(x.p99, 2),
        fmt(x.max, 1),
        fmt(x.peakRssMb, 0),
        fmt(x.sent),
        fmt(x.acked),
        x.stored === null ? "-" : fmt(x.stored),
        fmt(x.delivered),
        fmt(x.lost),
        fmt(x.serverCpuPct, 0),
        fmt(x.loadCpuPct, 0),
        fmt(x.otherCpuPct, 0),
      ]);
    }
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const [n, r] of rows.entries()) {
    console.log(r.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  "));
    if (n === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}

interface TargetCheck {
  name: string;
  ok: boolean | null;
  /** A figure reported, not a target. */
  info?: boolean;
  detail: string;
}

function checkTargets(summaries: Summary[]): TargetCheck[] {
  const by = (name: string) => summaries.find((s) => s.scenario.name === name);
  const checks: TargetCheck[] = [];
  const flood100 = by("flood-100");
  if (flood100 && flood100.aeschat.length > 0) {
    const a = summarize(flood100.aeschat).cpu;
    const r = flood100.relay.length > 0 ? summarize(flood100.relay).cpu : null;
    checks.push({
      name: "flood-100 cpu/delivery <= 2x relay",
      ok: a !== null && r !== null ? a <= 2 * r : null,
      detail: `${fmt(a, 3)} µs vs relay ${fmt(r, 3)} µs (${a && r ? fmt(a / r, 2) : "-"}x)`,
    });
    checks.push({
      name: "flood-100 cpu/delivery <= 0.45 µs",
      ok: a !== null ? a <= 0.45 : null,
      detail: `${fmt(a, 3)} µs`,
    });
  }
  for (const [name, limit] of [["steady-10", 5], ["steady-100", 30], ["steady-500", 30]] as const) {
    const s = by(name);
    if (!s || s.aeschat.length === 0) continue;
    const p99 = summarize(s.aeschat).p99;
    checks.push({
      name: `${name} p99 <= ${limit} ms`,
      ok: p99 !== null ? p99 <= limit : null,
      detail: `${fmt(p99, 2)} ms`,
    });
  }
  const flood500 = by("flood-500");
  if (flood500 && flood500.aeschat.length > 0) {
    const peak = Math.max(...flood500.aeschat.map((r) => r.peakRssMb));
    checks.push({ name: "flood-500 peak RSS <= 250 MB", ok: peak <= 250, detail: `${fmt(peak)} MB (worst run)` });
  }
  const burst100 = by("burst-100");
  if (burst100 && burst100.aeschat.length > 0) {
    const runs = burst100.aeschat;
    const cut = runs.reduce((n, r) => n + r.dropped, 0);
    const lost = runs.reduce((n, r) => n + r.lost, 0);
    checks.push({
      name: "burst-100 on the default flags: no client cut off, every message delivered",
      ok: cut === 0 && lost === 0,
      detail: `${cut} cut off, ${lost} lost, ${fmt(Math.max(...runs.map((r) => r.delivered)))} deliveries`,
    });
  }
  const burst500 = by("burst-500");
  if (burst500 && burst500.aeschat.length > 0) {
    const peak = Math.max(...burst500.aeschat.map((r) => r.peakRssMb));
    checks.push({
      name: `burst-500 on the default flags: peak RSS <= ${BURST_500_RSS_MB} MB`,
      ok: peak <= BURST_500_RSS_MB,
      detail: `${fmt(peak)} MB (worst run)`,
    });
  }
  const idle = summaries.find((s) => s.scenario.mode === "idle");
  if (idle && idle.aeschat.length > 0) {
    const peak = Math.max(...idle.aeschat.map((r) => r.peakRssMb));
    checks.push({
      name: `${idle.scenario.name} peak RSS <= 150 MB${idle.scenario.clients < 5000 ? " (target is for 5000)" : ""}`,
      ok: peak <= 150,
      detail: `${fmt(peak)} MB (worst run)`,
    });
  }
  const lost = summaries.reduce((n, s) => n + [...s.aeschat].reduce((m, r) => m + r.lost, 0), 0);
  const dropped = summaries.reduce((n, s) => n + [...s.aeschat].reduce((m, r) => m + r.dropped, 0), 0);
  const failed = summaries.reduce((n, s) => n + [...s.aeschat].reduce((m, r) => m + r.openFailed, 0), 0);
  checks.push({
    name: "zero loss (aeschat, all runs)",
    ok: lost === 0 && dropped === 0 && failed === 0,
    detail: `${lost} lost, ${dropped} receivers cut off, ${failed} sampled envelopes failed to open`,
  });
  const join = by("join-50");
  if (join && join.aeschat.length > 0) {
    const x = summarize(join.aeschat);
    checks.push({
      name: "join with 50 history messages < 20 ms",
      ok: x.p99 !== null ? x.p99 < 20 : null,
      detail: `prove->joined p50 ${fmt(x.p50, 2)} ms, p99 ${fmt(x.p99, 2)} ms; server CPU ${
        fmt(x.joinCpuMs, 2)
      } ms per join (join+prove)`,
    });
    checks.push({
      name: "login (hello to welcome)",
      ok: null,
      info: true,
      detail: `first (registers the nick) p50 ${fmt(x.loginFirstP50, 2)} ms, p99 ${fmt(x.loginFirstP99, 2)} ms, ` +
        `server CPU ${fmt(x.loginFirstCpuMs, 2)} ms; again p50 ${fmt(x.loginAgainP50, 2)} ms, p99 ${
          fmt(x.loginAgainP99, 2)
        } ms, server CPU ${fmt(x.loginAgainCpuMs, 2)} ms`,
    });
  }
  return checks;
}

const tempDirs = new Set<string>();
let cleaning: Promise<void> | undefined;

/** Stops every child process and removes every temporary directory; safe to call more than once. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAll({ graceMs: 3000 });
    for (const dir of tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    tempDirs.clear();
  })();
  return cleaning;
}

/**
 * CPU (% of one core) used outside the server and the load workers above which a scenario is called disturbed.
 * The loopback traffic itself costs some kernel time that /proc charges to no process (about 10-20% here).
 */
const OTHER_CPU_NOTE_PCT = 35;

/** Why a run's figures may describe the load generator rather than the server. */
function bottleneckNotes(summaries: Summary[]): string[] {
  const notes: string[] = [];
  for (const s of summaries) {
    const runs = s.aeschat;
    if (runs.length === 0) continue;
    const x = summarize(runs);
    if (s.scenario.mode === "flood" && x.serverCpuPct !== null && x.serverCpuPct < 90) {
      notes.push(
        `${s.scenario.name}: the server was not saturated (${fmt(x.serverCpuPct)}% of one core; load workers ` +
          `${fmt(x.loadCpuPct)}% of ${navigator.hardwareConcurrency * 100}% on ${navigator.hardwareConcurrency} ` +
          `shared cores): the load generator set the rate, so deliveries/s is a lower bound for the server; CPU per ` +
          `delivery still holds.`,
      );
    }
    const others = Math.max(x.otherCpuPct ?? 0, s.relay.length > 0 ? summarize(s.relay).otherCpuPct ?? 0 : 0);
    if (others >= OTHER_CPU_NOTE_PCT && (s.scenario.mode === "flood" || s.scenario.mode === "steady")) {
      notes.push(
        `${s.scenario.name}: the rest of the machine used ${fmt(others)}% of a core during these runs (other ` +
          `programs, and kernel network work not charged to a process): the figures are disturbed; run again.`,
      );
    }
    const busy = (x.serverCpuPct ?? 0) + (x.loadCpuPct ?? 0);
    if (s.scenario.mode === "steady" && busy >= 80 * navigator.hardwareConcurrency) {
      notes.push(
        `${s.scenario.name}: the ${navigator.hardwareConcurrency} cores were nearly saturated (server ` +
          `${fmt(x.serverCpuPct)}% + load workers ${fmt(x.loadCpuPct)}%): latency includes waiting for a core.`,
      );
    } else if (s.scenario.mode === "steady" && (x.serverCpuPct ?? 0) >= 85) {
      notes.push(
        `${s.scenario.name}: the server was nearly saturated (${fmt(x.serverCpuPct)}% of one core): latency ` +
          `includes queueing behind its own work.`,
      );
    }
    if (
      s.scenario.mode === "steady" && x.deliveriesPerS !== null && x.deliveriesPerS < 0.95 * STEADY_DELIVERIES_PER_S
    ) {
      notes.push(
        `${s.scenario.name}: only ${fmt(x.deliveriesPerS)} of the ${fmt(STEADY_DELIVERIES_PER_S)} deliveries/s ` +
          `scheduled were reached: the load generator could not keep the rate.`,
      );
    }
  }
  return notes;
}

async function main(): Promise<number> {
  const started = performance.now();
  const command = `deno task bench${Deno.args.length > 0 ? " " + Deno.args.join(" ") : ""}`;
  console.log(`aeschat benchmark: ${command}`);
  console.log(
    `server: ${["deno", ...serverArgs()].join(" ").replace(ROOT, "")} --port 0 --db <temp> ${serverFlags.join(" ")}`,
  );
  console.log(
    `  (--rate 0: no per-connection rate limit; --max-connections 6000 for the idle scenario; --log-level warn: no ` +
      `line per connect; --idle-timeout 3600 so silent clients stay; --send-queue, --send-grace, --max-queued, ` +
      `--synchronous and --history at their defaults unless given; the burst scenarios use no flag at all)`,
  );
  console.log(
    `relay: deno run -q --allow-net bench/relay.ts --port 0 (same frames and handshake; no validation, no proof ` +
      `check, no storage)`,
  );
  console.log(
    `load: ${
      WORKERS ?? "2 (4 from 300 clients)"
    } worker processes; ${RUNS} run(s) per scenario and target, median shown; ${DURATION_S} s of ` +
      `sending per run, open-loop (no sender waits for acks; receivers read as fast as they can): flood writes ` +
      `${CHUNK} messages whenever a sender's socket has taken the last ones, steady sends ` +
      `${fmt(STEADY_DELIVERIES_PER_S)} deliveries/s in total, burst writes ${BURST} per client at once; ` +
      `${navigator.hardwareConcurrency} cores, open-file limit ${openFileLimit()}`,
  );
  console.log("");
  const summaries: Summary[] = [];
  for (const s of selected) {
    await ensurePools(s);
    const summary: Summary = { scenario: s, aeschat: [], relay: [] };
    for (let run = 0; run < RUNS; run++) {
      for (const target of s.mode === "join" ? ["aeschat" as const] : TARGETS) {
        const dir = await Deno.makeTempDir({ prefix: "aeschat-bench-" });
        tempDirs.add(dir);
        try {
          const result = s.mode === "join" ? await runJoin(dir) : await runLoad(s, target, dir);
          summary[target].push(result);
          console.error(
            `${s.name} ${target} run ${run + 1}/${RUNS}: ${fmt(result.deliveriesPerS)} deliveries/s, ` +
              `${fmt(result.cpuUsPerDelivery, 3)} µs/delivery, p50 ${fmt(result.p50, 2)} p99 ${
                fmt(result.p99, 2)
              } ms, ` +
              `server ${fmt(result.serverCpuPct)}% load ${fmt(result.loadCpuPct)}% other ${fmt(result.otherCpuPct)}% ` +
              `cpu, ${fmt(result.peakRssMb)} MB` +
              `${result.lagP99Ms !== null ? `, sender lag p99 ${fmt(result.lagP99Ms, 1)} ms` : ""}` +
              `${result.notes.length > 0 ? ` [${result.notes.join("; ")}]` : ""}`,
          );
        } finally {
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          tempDirs.delete(dir);
        }
      }
    }
    summaries.push(summary);
  }
  console.log("");
  printTable(summaries);
  console.log("");
  const checks = checkTargets(summaries);
  for (const c of checks) {
    console.log(`${c.info ? "INFO" : c.ok === null ? "n/a " : c.ok ? "MET " : "MISS"} ${c.name}: ${c.detail}`);
  }
  const notes = bottleneckNotes(summaries);
  for (const s of summaries) {
    for (const target of ["aeschat", "relay"] as const) {
      const runs = s[target];
      if (s.scenario.mode === "idle" || runs.every((r) => r.notes.length === 0)) continue;
      notes.push(`${s.scenario.name} ${target}, run by run: ${runs.map((r) => r.notes.join(", ") || "-").join(" | ")}`);
    }
  }
  if (notes.length > 0) console.log("");
  for (const n of notes) console.log(`note: ${n}`);
  const results = {
    // Exactly the per-scenario figures of issue 5, aeschat's medians (relay: its CPU per delivery).
    scenarios: summaries.map((s) => {
      const a = s.aeschat.length > 0 ? summarize(s.aeschat) : undefined;
      const r = s.relay.length > 0 ? summarize(s.relay) : undefined;
      return {
        name: s.scenario.name,
        mode: s.scenario.mode,
        rooms: s.scenario.rooms,
        clients: s.scenario.clients,
        deliveries_per_s: round(a?.deliveriesPerS ?? null, 0),
        server_cpu_us_per_delivery: round(a?.cpu ?? null, 4),
        relay_cpu_us_per_delivery: round(r?.cpu ?? null, 4),
        p50_ms: round(a?.p50 ?? null, 3),
        p99_ms: round(a?.p99 ?? null, 3),
        peak_rss_mb: round(a?.peakRssMb ?? null, 1),
        sent: a?.sent ?? null,
        acked: a?.acked ?? null,
        stored: a?.stored ?? null,
        delivered: a?.delivered ?? null,
        lost: a?.lost ?? null,
      };
    }),
    command,
    date: new Date().toISOString(),
    quick: QUICK_MODE,
    runs: RUNS,
    duration_s: DURATION_S,
    workers: WORKERS ?? "auto",
    server_flags: serverFlags,
    cores: navigator.hardwareConcurrency,
    targets: checks,
    notes,
    // Everything else measured, per scenario: the relay's own figures and aeschat's extra ones.
    details: summaries.map((s) => {
      const a = s.aeschat.length > 0 ? summarize(s.aeschat) : undefined;
      const r = s.relay.length > 0 ? summarize(s.relay) : undefined;
      return {
        name: s.scenario.name,
        ratio: a?.cpu && r?.cpu ? round(a.cpu / r.cpu, 3) : null,
        max_ms: round(a?.max ?? null, 3),
        rss_mb: round(a?.rssMb ?? null, 1),
        server_cpu_pct: round(a?.serverCpuPct ?? null, 1),
        load_cpu_pct: round(a?.loadCpuPct ?? null, 1),
        other_cpu_pct: round(a?.otherCpuPct ?? null, 1),
        join_server_cpu_ms: round(a?.joinCpuMs ?? null, 3),
        login: a?.loginFirstP50 == null ? null : {
          first_p50_ms: round(a.loginFirstP50, 3),
          first_p99_ms: round(a.loginFirstP99, 3),
          first_server_cpu_ms: round(a.loginFirstCpuMs, 3),
          again_p50_ms: round(a.loginAgainP50, 3),
          again_p99_ms: round(a.loginAgainP99, 3),
          again_server_cpu_ms: round(a.loginAgainCpuMs, 3),
        },
        runs: s.aeschat.map((x) => ({
          deliveries_per_s: round(x.deliveriesPerS, 0),
          server_cpu_us_per_delivery: round(x.cpuUsPerDelivery, 4),
          p99_ms: round(x.p99, 3),
          peak_rss_mb: round(x.peakRssMb, 1),
        })),
        relay: r
          ? {
            deliveries_per_s: round(r.deliveriesPerS, 0),
            p50_ms: round(r.p50, 3),
            p99_ms: round(r.p99, 3),
            peak_rss_mb: round(r.peakRssMb, 1),
            sent: r.sent,
            delivered: r.delivered,
            lost: r.lost,
            runs: s.relay.map((x) => ({ cpu_us_per_delivery: round(x.cpuUsPerDelivery, 4) })),
          }
          : null,
      };
    }),
  };
  await Deno.writeTextFile(flags.out!, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwrote ${flags.out!.replace(ROOT, "")} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  const losses = summaries.flatMap((s) =>
    [...s.aeschat, ...s.relay]
      .filter((r) => r.lost > 0 || r.dropped > 0 || r.openFailed > 0)
      .map((r) => `${s.scenario.name} ${r.target}: ${r.lost} lost, ${r.dropped} cut off, ${r.openFailed} unopenable`)
  );
  if (losses.length > 0) {
    console.log(`LOSS: ${losses.join("; ")}`);
    return 1;
  }
  return 0;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    console.error(`\n${signal}: stopping the server, relay and load processes and removing temporary files`);
    cleanup().finally(() => Deno.exit(130));
  });
}
let code: number;
try {
  code = await main();
} catch (err) {
  console.error(`benchmark failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  code = 1;
}
await cleanup();
Deno.exit(code);
