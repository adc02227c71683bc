/**
 * Helpers for end-to-end tests in which real members keep talking while something else goes on: a conversation with
 * an arrival bound, settling tasks, and reading a process's memory and open files from /proc.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openEnvelope } from "../../lib/crypto.ts";
import type { WireClient } from "./wire.ts";

/** Most a relayed message may take to arrive while the server is being abused. */
export const ARRIVAL_BOUND_MS = 2000;

/**
 * Runs tasks to the end, then throws the first failure (so no task is left running against closed sockets).
 *
 * @param tasks the tasks
 */
export async function settle(tasks: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  for (const r of results) if (r.status === "rejected") throw r.reason;
}

/**
 * Two members talk while something else goes on: each sends `count` messages every `intervalMs`; every message must
 * reach the other, in order and intact, within {@link ARRIVAL_BOUND_MS} of being sent.
 *
 * @param a one member
 * @param b another member of the same room
 * @param options.count messages each
 * @param options.intervalMs pause after each ack
 * @returns how many messages were checked, and the slowest arrival
 */
export async function converse(
  a: WireClient,
  b: WireClient,
  options: { count: number; intervalMs: number },
): Promise<{ checked: number; worstMs: number }> {
  const sentAt = new Map<string, number>();
  const talk = async (from: WireClient) => {
    for (let i = 0; i < options.count; i++) {
      const envelope = await from.seal(`${from.nick} line ${i}`);
      sentAt.set(envelope.id, performance.now());
      await from.send({ type: "send", envelope });
      const ack = await from.awaitAck(envelope.id, { timeoutMs: 20_000 });
      assert.equal(ack.type, "ack", `${from.nick} line ${i}: ${JSON.stringify(ack)}`);
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
  };
  let worstMs = 0;
  const listen = async (to: WireClient, from: WireClient) => {
    for (let i = 0; i < options.count; i++) {
      const m = await to.next("message", { where: (m) => m.envelope.from === from.nick, timeoutMs: 20_000 });
      const delay = performance.now() - sentAt.get(m.envelope.id)!;
      worstMs = Math.max(worstMs, delay);
      assert.ok(delay < ARRIVAL_BOUND_MS, `${from.nick} line ${i} took ${Math.round(delay)} ms to reach ${to.nick}`);
      const opened = await openEnvelope(to.keys!, { envelope: m.envelope, room: to.room, from: from.nick });
      assert.equal(opened.plaintext.body, `${from.nick} line ${i}`, "messages arrive in order and intact");
    }
  };
  await settle([talk(a), talk(b), listen(b, a), listen(a, b)]);
  return { checked: options.count * 2, worstMs };
}

/**
 * Resident memory of a process, from /proc (through cat: Deno reads another process's /proc files only with -A).
 *
 * @param pid the process
 * @returns VmRSS in KiB
 */
export async function rssKiB(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" }).output();
  const status = new TextDecoder().decode(out.stdout);
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]);
}
