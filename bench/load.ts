/**
 * One load-generator process of the benchmark. It opens its share of the clients (the v2 opening with each client's
 * identity key, and the real join proof), then on the coordinator's commands sends pooled sealed envelopes open-loop,
 * the way users do: no sender ever waits for an ack or holds back to stay under a limit (flood: as fast as its socket
 * takes them; steady: on a fixed schedule; burst: its whole burst in one write), and every receiver reads as fast as
 * it can. It counts every delivery per sender, opens a sample of them with the room keys and checks their signatures
 * (by the key the sender's nick is registered with), and finally computes send-to-receive latency for every delivery
 * from all senders' send times. A client the server cuts off, a message never acked and a delivery that never arrives
 * are all loss.
 *
 * Run by bench/run.ts: `deno run --allow-net --allow-read --allow-write bench/load.ts CONFIG.json`. Commands arrive
 * as JSON lines on stdin; events go out as JSON lines on stdout.
 *
 * @module
 */

import { deriveRoomKeys } from "../lib/crypto.ts";
import { openRoomMessage } from "../lib/message.ts";
import { sameBytes } from "../lib/bytes.ts";
import { testIdentity } from "../tests/support/wire.ts";
import { BenchClient, clock } from "./bench_client.ts";
import { Histogram } from "./histogram.ts";
import { findIdStart, messageBody, readMessageIndex } from "./pool.ts";

/** One client of this worker. */
export interface LoadClient {
  /** Client number, unique in the scenario. */
  index: number;
  /** Nick. */
  nick: string;
  /** Room to join. */
  room: string;
  /** Byte offset of this client's pool in the pool file (-1: it does not send). */
  poolOffset: number;
  /** Frames in its pool. */
  poolCount: number;
  /** Bytes per frame. */
  frameLength: number;
}

/** What bench/run.ts tells a worker. */
export interface LoadConfig {
  /** Server port on 127.0.0.1. */
  port: number;
  /** Worker number. */
  worker: number;
  /** Room passphrase. */
  passphrase: string;
  /** The server key the messages are signed for (base64). */
  serverPub: string;
  /** Room salt (base64); every benchmark room is created with it. */
  salt: string;
  /** PBKDF2 iterations the rooms were created with. */
  iterations: number;
  /** Pool size of the scenario: message index = client * stride + k. */
  stride: number;
  /** Clients in the whole scenario (all workers). */
  totalClients: number;
  /** flood, steady, burst or idle. */
  mode: "flood" | "steady" | "burst" | "idle";
  /** flood: messages per write (a sender writes again as soon as its socket has taken the last write). */
  chunk: number;
  /** steady: messages per second per client. */
  ratePerClient: number;
  /** Fully open one delivery in this many. */
  sampleEvery: number;
  /** Bytes per socket read. */
  readBytes: number;
  /** Clients connecting at once during setup. */
  connectConcurrency: number;
  /** All this worker's pools back to back. */
  poolFile: string;
  /** Where to write this worker's send times. */
  sendsFile: string;
  /** This worker's clients. */
  clients: LoadClient[];
  /** Sending clients of each room (client numbers), for the delivery check. */
  roomSenders: Record<string, number[]>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function emit(event: Record<string, unknown>): void {
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(event) + "\n"));
}

/** Growable columns of (message index, receive time) for every delivery. */
class DeliveryLog {
  #chunk = 1 << 20;
  #indexes: Uint32Array[] = [];
  #times: Float64Array[] = [];
  #fill = this.#chunk;
  /** Deliveries recorded. */
  count = 0;

  add(index: number, at: number): void {
    if (this.#fill === this.#chunk) {
      this.#indexes.push(new Uint32Array(this.#chunk));
      this.#times.push(new Float64Array(this.#chunk));
      this.#fill = 0;
    }
    this.#indexes[this.#indexes.length - 1][this.#fill] = index;
    this.#times[this.#times.length - 1][this.#fill] = at;
    this.#fill++;
    this.count++;
  }

  forEach(fn: (index: number, at: number) => void): void {
    for (let c = 0; c < this.#indexes.length; c++) {
      const n = c === this.#indexes.length - 1 ? this.#fill : this.#chunk;
      const idx = this.#indexes[c];
      const times = this.#times[c];
      for (let i = 0; i < n; i++) fn(idx[i], times[i]);
    }
  }
}

class Sender {
  readonly spec: LoadClient;
  readonly client: BenchClient;
  readonly pool: Uint8Array;
  readonly sendTimes: Float64Array;
  sent = 0;
  acked = 0;
  rejected = 0;
  /** steady: when this client's message 0 is due. */
  firstDue = 0;

  constructor(spec: LoadClient, client: BenchClient, pool: Uint8Array) {
    this.spec = spec;
    this.client = client;
    this.pool = pool;
    this.sendTimes = new Float64Array(spec.poolCount);
  }

  get outstanding(): number {
    return this.sent - this.acked - this.rejected;
  }

  /** Whether its socket is still taking the last write. */
  get writing(): boolean {
    return this.client.writing;
  }

  /** Sends up to `n` more pooled frames in one write. */
  sendMore(n: number, at: number): number {
    const m = Math.min(n, this.spec.poolCount - this.sent);
    if (m <= 0 || this.client.closed) return 0;
    const L = this.spec.frameLength;
    this.client.write(this.pool.subarray(this.sent * L, (this.sent + m) * L));
    this.sendTimes.fill(at, this.sent, this.sent + m);
    this.sent += m;
    return m;
  }
}

async function main(configPath: string): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(configPath)) as LoadConfig;
  const serverPub = Uint8Array.fromBase64(config.serverPub);
  const keys = await deriveRoomKeys(config.passphrase, {
    salt: Uint8Array.fromBase64(config.salt),
    iterations: config.iterations,
  });
  const poolBytes = config.clients.some((c) => c.poolOffset >= 0)
    ? await Deno.readFile(config.poolFile)
    : new Uint8Array(0);

  // Setup: connect, hello, join with a proof.
  const setupStart = clock();
  const clients: BenchClient[] = new Array(config.clients.length);
  let nextToConnect = 0;
  const connectOne = async () => {
    while (nextToConnect < config.clients.length) {
      const i = nextToConnect++;
      const spec = config.clients[i];
      const client = await BenchClient.connect(config.port, { readBytes: config.readBytes });
      await client.hello(spec.nick);
      await client.join(spec.room, { keys, nick: spec.nick });
      clients[i] = client;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, config.connectConcurrency) }, connectOne));
  const setupMs = clock() - setupStart;

  const senders: Sender[] = [];
  const N = config.totalClients;
  const next = new Uint32Array(config.clients.length * N);
  const log = new DeliveryLog();
  let duplicates = 0;
  let gaps = 0;
  let unreadable = 0;
  let lastRecvAt = 0;
  let sampleCountdown = config.sampleEvery;
  // Sampled deliveries are opened after the run, so that the crypto does not compete with the server for the CPU.
  const samples: { text: string; room: string; s: number; k: number }[] = [];
  const byIndex = new Map<number, string>(config.clients.map((c) => [c.index, c.nick]));
  const nickOf = (s: number) => byIndex.get(s) ?? `?${s}`;
  const stride = config.stride;
  let stopped = false;
  let goAt = 0;
  const lag = new Histogram();

  const openSample = async (sample: { text: string; room: string; s: number; k: number }) => {
    try {
      const msg = JSON.parse(sample.text);
      const context = { serverPub, room: sample.room, accessPub: keys.accessPub, epoch: 0 };
      // The MAC, then the sender's signature over the room instance and its sequence number.
      const opened = await openRoomMessage(keys, { envelope: msg.envelope, context });
      // Signed by the key the sender's nick is registered with (every bench nick logs in with its test identity).
      const registered = (await testIdentity(opened.from)).publicKey;
      return opened.body === messageBody(sample.s, sample.k) && opened.signer?.sequence.n === sample.k + 1 &&
        opened.signer !== undefined && sameBytes(opened.signer.key, registered) &&
        (byIndex.has(sample.s) ? opened.from === nickOf(sample.s) : true);
    } catch {
      return false;
    }
  };

  for (let r = 0; r < config.clients.length; r++) {
    const spec = config.clients[r];
    const client = clients[r];
    client.inbox = [];
    const sender = spec.poolOffset >= 0
      ? new Sender(
        spec,
        client,
        poolBytes.subarray(spec.poolOffset, spec.poolOffset + spec.poolCount * spec.frameLength),
      )
      : undefined;
    if (sender) senders.push(sender);
    const base = r * N;
    client.fast = {
      message(body, at) {
        const idStart = findIdStart(body);
        if (idStart < 0) {
          unreadable++;
          return;
        }
        const index = readMessageIndex(body, { at: idStart, stride });
        const s = Math.floor(index / stride);
        const k = index - s * stride;
        if (s >= N) {
          unreadable++;
          return;
        }
        const want = next[base + s];
        if (k === want) next[base + s] = k + 1;
        else if (k < want) duplicates++;
        else {
          gaps += k - want;
          next[base + s] = k + 1;
        }
        log.add(index, at);
        lastRecvAt = at;
        if (--sampleCountdown === 0) {
          sampleCountdown = config.sampleEvery;
          samples.push({ text: decoder.decode(body), room: spec.room, s, k });
        }
      },
      ack() {
        if (sender) sender.acked++;
      },
      afterRead() {
        if (!sender) return;
        // An error frame naming one of our ids means that message was refused (not acked); rate_limited names none.
        if (client.errors.length > 0) {
          const refused = client.errors.filter((e) => e.id !== undefined).length;
          sender.rejected += refused;
          rejectedTotal += refused;
          errorCodes.push(...client.errors.map((e) => e.code));
          client.errors = [];
        }
      },
    };
  }
  let rejectedTotal = 0;
  const errorCodes: string[] = [];
  emit({ event: "ready", clients: clients.length, setupMs });

  // Flood: every sender writes again as soon as its socket has taken its last write; acks are never waited for.
  const floodTick = () => {
    if (stopped) return;
    const at = clock();
    for (const s of senders) if (!s.writing) s.sendMore(config.chunk, at);
  };

  let steadyTimer: ReturnType<typeof setInterval> | undefined;
  const steadyTick = () => {
    const at = clock();
    const perMs = config.ratePerClient / 1000;
    for (const s of senders) {
      const due = Math.min(s.spec.poolCount, Math.floor((at - s.firstDue) * perMs) + 1);
      if (due <= s.sent) continue;
      for (let k = s.sent; k < due; k++) lag.record((at - (s.firstDue + k / perMs)) * 1000);
      s.sendMore(due - s.sent, at);
    }
  };

  const commands: Record<string, (cmd: Record<string, unknown>) => Promise<void> | void> = {
    go() {
      goAt = clock();
      if (config.mode === "flood") {
        for (const s of senders) s.sendMore(config.chunk, goAt);
        steadyTimer = setInterval(floodTick, 1);
      } else if (config.mode === "burst") {
        // The whole burst in one write per sender, all senders at once.
        for (const s of senders) s.sendMore(s.spec.poolCount, goAt);
      } else if (config.mode === "steady") {
        // Spread the clients' schedules evenly over one period, so the total rate is smooth.
        const period = 1000 / config.ratePerClient;
        for (const s of senders) s.firstDue = goAt + ((s.spec.index * 0.618034) % 1) * period;
        steadyTimer = setInterval(steadyTick, 1);
      }
      emit({ event: "going", at: goAt });
    },
    async stop(cmd) {
      stopped = true;
      clearInterval(steadyTimer);
      // Open-loop senders have many messages in flight: wait for every one to be answered (or its client to go).
      const deadline = clock() + Number(cmd.drainMs ?? 60_000);
      while (senders.some((s) => s.outstanding > 0 && !s.client.closed) && clock() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      emit({
        event: "drained",
        clients: senders.map((s) => [s.spec.index, s.sent, s.acked]),
        exhausted: senders.filter((s) => s.sent >= s.spec.poolCount).length,
        rejected: rejectedTotal,
        unanswered: senders.reduce((n, s) => n + s.outstanding, 0),
        maxReadGapMs: Math.max(0, ...clients.filter((c) => !c.closed).map((c) => c.maxReadGapMs)),
        errorCodes: [...new Set(errorCodes)],
        lagP99Ms: lag.total > 0 ? lag.quantile(0.99) / 1000 : null,
      });
    },
    async expect(cmd) {
      const acked = cmd.acked as number[];
      const timeoutMs = Number(cmd.timeoutMs ?? 20_000);
      const missingNow = () => {
        let missing = 0;
        let dropped = 0;
        let extra = 0;
        let expected = 0;
        for (let r = 0; r < config.clients.length; r++) {
          const spec = config.clients[r];
          if (clients[r].closed) {
            dropped++;
            continue;
          }
          for (const s of config.roomSenders[spec.room] ?? []) {
            if (s === spec.index) continue;
            const got = next[r * N + s];
            expected += acked[s];
            if (got < acked[s]) missing += acked[s] - got;
            if (got > acked[s]) extra += got - acked[s];
          }
        }
        return { missing, dropped, extra, expected };
      };
      const deadline = clock() + timeoutMs;
      let state = missingNow();
      while (state.missing > 0 && clock() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        state = missingNow();
      }
      const results = await Promise.all(samples.map(openSample));
      emit({
        event: "received",
        delivered: log.count,
        expected: state.expected,
        missing: state.missing,
        extra: state.extra,
        dropped: state.dropped,
        duplicates,
        gaps,
        unreadable,
        lastRecvAt,
        opened: results.filter((ok) => ok).length,
        openFailed: results.filter((ok) => !ok).length,
      });
    },
    async sends() {
      let bytes = 0;
      for (const s of senders) bytes += 8 + s.sent * 8;
      const out = new Uint8Array(bytes);
      const view = new DataView(out.buffer);
      let at = 0;
      for (const s of senders) {
        view.setUint32(at, s.spec.index, true);
        view.setUint32(at + 4, s.sent, true);
        at += 8;
        new Float64Array(out.buffer, at, s.sent).set(s.sendTimes.subarray(0, s.sent));
        at += s.sent * 8;
      }
      await Deno.writeFile(config.sendsFile, out);
      emit({ event: "sendsWritten" });
    },
    async analyze(cmd) {
      const sendTime = new Float64Array(N * stride).fill(NaN);
      for (const file of cmd.files as string[]) {
        const bytes = await Deno.readFile(file);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        let at = 0;
        while (at < bytes.length) {
          const index = view.getUint32(at, true);
          const count = view.getUint32(at + 4, true);
          at += 8;
          sendTime.set(new Float64Array(bytes.slice(at, at + count * 8).buffer), index * stride);
          at += count * 8;
        }
      }
      const hist = new Histogram();
      let unmatched = 0;
      log.forEach((index, recvAt) => {
        const sentAt = sendTime[index];
        if (Number.isNaN(sentAt)) unmatched++;
        else hist.record((recvAt - sentAt) * 1000);
      });
      emit({ event: "latency", hist: hist.toJSON(), unmatched, sinceGoMs: lastRecvAt - goAt });
    },
    exit() {
      for (const c of clients) c.close();
      Deno.exit(0);
    },
  };

  let pending = "";
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await Deno.stdin.read(buf);
    if (n === null) break;
    pending += decoder.decode(buf.subarray(0, n), { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === "") continue;
      const cmd = JSON.parse(line) as Record<string, unknown>;
      const handler = commands[String(cmd.cmd)];
      if (!handler) throw new Error(`unknown command ${cmd.cmd}`);
      await handler(cmd);
    }
  }
  for (const c of clients) c.close();
  Deno.exit(0);
}

if (import.meta.main) {
  // A clean exit on SIGTERM, so that --cpu-prof can write its profile.
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  main(Deno.args[0]).catch((err) => {
    emit({ event: "fatal", message: err instanceof Error ? err.stack ?? err.message : String(err) });
    Deno.exit(1);
  });
}
