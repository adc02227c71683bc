/**
 * The client's transport over real loopback sockets: frames split and merged, ordered writes, a TLS server seen by a
 * plain client, a stream that is not frames, an unreachable port; and the user's lines for TLS failures.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeMessage } from "../lib/frame.ts";
import { dialServer, type LinkError, looksLikeTls, tlsProblem } from "../lib/client/link.ts";

/** A one-connection TCP server on 127.0.0.1 that runs `serve` on the connection. */
async function withServer(serve: (conn: Deno.Conn) => Promise<void>, test: (port: number) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await serve(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the client
      }
    }
  })();
  try {
    await test((listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    await served.catch(() => {});
  }
}

function collector() {
  const bodies: string[] = [];
  let lost: (error: LinkError) => void;
  const ended = new Promise<LinkError>((resolve) => lost = resolve);
  return {
    bodies,
    ended,
    events: { body: (b: Uint8Array) => bodies.push(new TextDecoder().decode(b)), lost: (e: LinkError) => lost(e) },
  };
}

Deno.test("a link reads frames split and merged across reads, writes in order, and reports the end once", async () => {
  const frames = [encodeMessage({ type: "a" }), encodeMessage({ type: "b" }), encodeMessage({ type: "c" })];
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) all.set(f, (at += f.length) - f.length);
  let received = "";
  await withServer(async (conn) => {
    // One byte, then the rest of the first two frames at once, then the third.
    await conn.write(all.subarray(0, 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await conn.write(all.subarray(1, frames[0].length + frames[1].length));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await conn.write(all.subarray(frames[0].length + frames[1].length));
    const buf = new Uint8Array(1024);
    while (received.length < 6) {
      const n = await conn.read(buf);
      if (n === null) break;
      received += new TextDecoder().decode(buf.subarray(0, n)).replace(/[^0-9]/g, "");
    }
  }, async (port) => {
    const c = collector();
    const link = await dialServer({ host: "127.0.0.1", port })(c.events);
    for (const n of ["12", "34", "56"]) link.write(new TextEncoder().encode(n));
    await link.flushed();
    const error = await c.ended;
    assert.deepEqual(c.bodies, ['{"type":"a"}', '{"type":"b"}', '{"type":"c"}']);
    assert.equal(error.kind, "lost");
    assert.equal(error.message, "the server closed the connection");
    assert.ok(link.closed);
  });
  assert.equal(received, "123456");
});

Deno.test("a plain link to a TLS server says to add --tls", async () => {
  await withServer(async (conn) => {
    await conn.read(new Uint8Array(64));
    // What a TLS server answers a frame with: an alert record.
    await conn.write(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]));
  }, async (port) => {
    const c = collector();
    const link = await dialServer({ host: "127.0.0.1", port })(c.events);
    link.write(encodeMessage({ type: "hello", version: 1, nick: "x" }));
    const error = await c.ended;
    assert.equal(error.kind, "tls");
    assert.equal(error.message, `cannot connect to 127.0.0.1:${port}: the server speaks TLS: add --tls`);
  });
});

Deno.test("a stream that is not frames ends the link with a protocol error", async () => {
  await withServer(async (conn) => {
    await conn.write(new Uint8Array([0, 0, 0, 0]));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }, async (port) => {
    const c = collector();
    await dialServer({ host: "127.0.0.1", port })(c.events);
    const error = await c.ended;
    assert.equal(error.kind, "protocol");
    assert.match(error.message, /not a frame/);
  });
});

Deno.test("dialing a port nobody listens on fails with the address", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const c = collector();
  const err = await dialServer({ host: "127.0.0.1", port })(c.events).then(() => undefined, (e) => e as LinkError);
  assert.equal(err?.kind, "unreachable");
  assert.match(err!.message, new RegExp(`^cannot connect to 127\\.0\\.0\\.1:${port}: `));
});

Deno.test("TLS failures become a line that says what to do", () => {
  assert.equal(
    tlsProblem("invalid peer certificate: UnknownIssuer", "127.0.0.1"),
    "certificate not trusted: pass --ca FILE",
  );
  assert.equal(
    tlsProblem(
      'invalid peer certificate: certificate not valid for name "127.0.0.1"; certificate is only valid for DnsName("chat.example")',
      "127.0.0.1",
    ),
    "certificate is for chat.example, not 127.0.0.1",
  );
  assert.equal(
    tlsProblem(
      'invalid peer certificate: certificate not valid for name "x"; certificate is only valid for DnsName("a") or IpAddress(10.0.0.1)',
      "x",
    ),
    "certificate is for a, 10.0.0.1, not x",
  );
  assert.equal(tlsProblem("received corrupt message of type InvalidContentType", "h"), "the server does not speak TLS");
  assert.match(tlsProblem("invalid peer certificate: Expired", "h")!, /^certificate not accepted: /);
  assert.equal(tlsProblem("Connection refused (os error 111)", "h"), undefined);
  assert.ok(looksLikeTls(new Uint8Array([0x16, 0x03, 0x01])));
  assert.ok(!looksLikeTls(new Uint8Array([0x00, 0x00, 0x01, 0x00])));
});
