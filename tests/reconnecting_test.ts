/**
 * Specification of lib/client/reconnecting.ts on its own, with the steps scripted: the delays (doubled, capped,
 * jittered), what is tried again and what is final, giving up at the deadline, and a close ending the wait at once.
 * (The real programs reconnecting to a real server are in tests/e2e_client_test.ts and tests/session_*_test.ts.)
 *
 * @module
 */

import assert from "node:assert/strict";
import { JoinError, SessionError } from "../lib/client/errors.ts";
import type { SessionEvent } from "../lib/client/events.ts";
import { Reconnecting, type ReconnectSteps } from "../lib/client/reconnecting.ts";

type Offline = Extract<SessionEvent, { kind: "offline" }>;

/** Steps whose opens and rejoins fail as scripted (an Error thrown, or undefined for success), recording each call. */
function scripted(script: { opens?: (Error | undefined)[]; rejoins?: (Error | undefined)[] }) {
  const calls: string[] = [];
  const offline: Offline[] = [];
  const state = { offline: true };
  const opens = [...script.opens ?? []];
  const rejoins = [...script.rejoins ?? []];
  const steps: ReconnectSteps = {
    offline: () => state.offline,
    open: () => {
      calls.push("open");
      const error = opens.shift();
      return error ? Promise.reject(error) : Promise.resolve();
    },
    rejoin: () => {
      calls.push("rejoin");
      const error = rejoins.shift();
      if (error) return Promise.reject(error);
      state.offline = false;
      return Promise.resolve();
    },
    drop: () => calls.push("drop"),
    onEvent: (event) => offline.push(event as Offline),
  };
  return { steps, calls, offline, state };
}

Deno.test("the delay doubles after every failure up to the largest, each within ±50% jitter, attempts counted", async () => {
  const refused = () => new Error("connection refused");
  const { steps, calls, offline } = scripted({ opens: [refused(), refused(), refused(), refused()] });
  await new Reconnecting({ firstDelayMs: 4, maxDelayMs: 16 }, steps).run("the connection was lost");
  assert.deepEqual(calls, ["open", "open", "open", "open", "open", "rejoin"]);
  assert.deepEqual(offline.map((e) => e.attempt), [1, 2, 3, 4, 5]);
  assert.deepEqual(offline.map((e) => e.reason), ["the connection was lost", ...Array(4).fill("connection refused")]);
  for (const [i, base] of [4, 8, 16, 16, 16].entries()) {
    const { retryInMs } = offline[i];
    assert.ok(retryInMs >= Math.round(base * 0.5) && retryInMs <= Math.round(base * 1.5), `${retryInMs} for ${base}`);
  }
});

Deno.test("a rejoin that fails drops the new connection and tries again; a SessionError of the rejoin is final", async () => {
  const again = scripted({ rejoins: [new JoinError("offline", "the connection was lost")] });
  await new Reconnecting({ firstDelayMs: 1 }, again.steps).run("gone");
  assert.deepEqual(again.calls, ["open", "rejoin", "drop", "open", "rejoin"]);
  assert.equal(again.offline[1].reason, "the connection was lost");

  const final = scripted({ rejoins: [new SessionError("denied", "rejoining #ops: wrong keys")] });
  await assert.rejects(new Reconnecting({ firstDelayMs: 1 }, final.steps).run("gone"), /rejoining #ops/);
  assert.deepEqual(final.calls, ["open", "rejoin"]);
});

Deno.test("a changed server key, a nick refused for good or an unsupported version stop at once; others are retried", async () => {
  const finals = [
    new SessionError("changed", "the server's key changed"),
    new SessionError("nick", "alice is registered to another key"),
    new SessionError("connect", "the server speaks another version", { code: "version_unsupported" }),
  ];
  for (const error of finals) {
    const { steps, calls } = scripted({ opens: [error] });
    await assert.rejects(new Reconnecting({ firstDelayMs: 1 }, steps).run("gone"), (err) => err === error);
    assert.deepEqual(calls, ["open"]);
  }
  const { steps, calls } = scripted({ opens: [new SessionError("connect", "connection refused")] });
  await new Reconnecting({ firstDelayMs: 1 }, steps).run("gone");
  assert.deepEqual(calls, ["open", "open", "rejoin"]);
});

Deno.test("with a deadline, no wait goes past it, and the error at the deadline names the last reason", async () => {
  const opens = Array.from({ length: 10_000 }, () => new Error("connection refused"));
  const { steps, offline } = scripted({ opens });
  // The first delay alone (500 to 1500 ms) would pass the deadline: the wait is cut to it.
  const giving = new Reconnecting({ firstDelayMs: 1_000, giveUpAfterMs: 200 }, steps).run("the server went away");
  await assert.rejects(giving, (err) => {
    assert.ok(err instanceof SessionError);
    assert.equal(err.kind, "closed");
    assert.match(err.message, /did not come back within 0\.2 s \(connection refused\)/);
    return true;
  });
  assert.ok(offline.length >= 1);
  for (const e of offline) assert.ok(e.retryInMs <= 200, `waited ${e.retryInMs} ms`);
});

Deno.test("closing during a wait ends it at once, and nothing more is tried", async () => {
  const { steps, calls, offline, state } = scripted({});
  const reconnecting = new Reconnecting({ firstDelayMs: 600_000 }, steps);
  const run = reconnecting.run("gone");
  assert.equal(offline.length, 1);
  state.offline = false;
  reconnecting.wake();
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const tooLate = new Promise((_, reject) => deadline = setTimeout(() => reject(new Error("still waiting")), 10_000));
  try {
    await Promise.race([run, tooLate]);
  } finally {
    clearTimeout(deadline);
  }
  assert.deepEqual(calls, []);
});
