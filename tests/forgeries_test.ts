/**
 * The forgery reports on their own: the first at once, then one per sender per interval with the count, a bound on
 * the senders tracked, and nothing lost at the end.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type ForgeryReport, ForgeryReports } from "../lib/client/forgeries.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("the first forgery from a sender is reported at once, the rest of an interval as one count", async () => {
  const reports: ForgeryReport[] = [];
  const limiter = new ForgeryReports({ intervalMs: 30, senders: 8, report: (r) => reports.push(r) });
  for (let i = 0; i < 100; i++) limiter.add("general", "alice", i + 1);
  assert.deepEqual(reports, [{ room: "general", from: "alice", count: 1, seq: 1 }]);
  while (reports.length < 2) await sleep(5);
  assert.deepEqual(reports[1], { room: "general", from: "alice", count: 99 });
  // A quiet interval ends the tracking: the next one is again reported at once.
  await sleep(100);
  limiter.add("general", "alice", 500);
  assert.deepEqual(reports.at(-1), { room: "general", from: "alice", count: 1, seq: 500 });
  limiter.flush();
});

Deno.test("senders beyond the bound are counted together, and flush reports what is left", () => {
  const reports: ForgeryReport[] = [];
  const limiter = new ForgeryReports({ intervalMs: 60_000, senders: 2, report: (r) => reports.push(r) });
  for (const from of ["a", "b", "c", "d", "a", "d"]) limiter.add("general", from);
  limiter.flush();
  assert.deepEqual(reports.map((r) => `${r.from} ${r.count}`), [
    "a 1",
    "b 1",
    "other senders 1",
    "a 1",
    "other senders 2",
  ]);
});
