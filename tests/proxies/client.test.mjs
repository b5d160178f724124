// The official @microsoft/signalr client through each proxy: the README configurations carry
// both hubs on every transport (and keep them through a held long poll); each broken variant
// breaks what it breaks for real clients.
import { describe } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { expectReject, MESSAGE_TYPE } from "../interop/lib/harness.mjs";
import { rawWebSocket } from "../interop/lib/rawws.mjs";
import { ENV, INSTANCES, client, proxyTest, sendVia, waitFor } from "./lib/setup.mjs";

const REV = "2026-11-28T10:00:00Z";
const TRANSPORT_CLASS = { WebSockets: "WebSocketTransport", ServerSentEvents: "ServerSentEventsTransport", LongPolling: "LongPollingTransport" };

/** The ways a client connects: Bitwarden's own first (skipNegotiation, WebSockets, MessagePack). */
const WAYS = [
  { label: "WebSockets skipNegotiation MessagePack (as Bitwarden)", transport: "WebSockets", skipNegotiation: true, protocol: "msgpack" },
  { label: "WebSockets negotiated JSON", transport: "WebSockets", protocol: "json" },
  { label: "ServerSentEvents JSON", transport: "ServerSentEvents", protocol: "json" },
  { label: "LongPolling MessagePack", transport: "LongPolling", protocol: "msgpack" },
];

/** A connection to /notifications/hub for a new user, through `inst`. */
function hubConnection(h, inst, way) {
  const u = h.user();
  const c = h.connection({ url: `${inst.base}/notifications/hub`, token: u.token, label: `hub ${way.label}`, ...way });
  return { u, c };
}

/** A connection to /notifications/anonymous-hub?Token=<auth request id>, through `inst`. */
function anonymousConnection(h, inst, way) {
  const requestId = randomUUID();
  const c = h.connection({ url: `${inst.base}/notifications/anonymous-hub?Token=${requestId}`, label: `anonymous-hub ${way.label}`, ...way });
  return { requestId, c };
}

const field = (m, json, msgpack) => (m[json] !== undefined ? m[json] : m[msgpack]);

/** A sync notification for `u` arrives on `c` (sent through `via`, or straight to pushwarden). */
async function expectUserNotification(c, u, via) {
  const id = randomUUID();
  const delivered = await sendVia(via, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null });
  assert.equal(delivered, 1, "pushwarden should count one connection for the user");
  const m = await c.received(10_000, "the sync notification");
  assert.equal(field(m, "type", "Type"), 0);
  assert.equal(field(field(m, "payload", "Payload"), "id", "Id"), id);
}

/** A login-with-device answer for `requestId` arrives on the anonymous connection `c`. */
async function expectAuthResponse(c, requestId, via) {
  const userId = randomUUID();
  const delivered = await sendVia(via, { type: 16, payload: { id: requestId, userId }, contextId: null });
  assert.equal(delivered, 1, "pushwarden should count one anonymous connection with that Token");
  const m = await c.inbox.AuthRequestResponseRecieved.next(10_000, "AuthRequestResponseRecieved");
  assert.equal(field(m, "type", "Type"), 16);
  assert.equal(field(field(m, "payload", "Payload"), "id", "Id"), requestId);
}

const byExpect = (e) => INSTANCES.filter((i) => i.expect === e);

describe(`official client ${client.installed.signalr} through the README's proxies`, { concurrency: true }, () => {
  for (const inst of byExpect("ok")) {
    for (const way of WAYS) {
      proxyTest(inst, `/notifications/hub, ${way.label}: connects, receives a notification`, async (h) => {
        const { u, c } = hubConnection(h, inst, way);
        await c.start();
        assert.equal(c.conn.connection.transport?.constructor?.name, TRANSPORT_CLASS[way.transport]);
        await expectUserNotification(c, u, inst);
        await c.conn.stop();
        assert.equal(await c.events.closed.next(5_000, "onclose after stop()"), null, "stop() should close cleanly");
      });
      proxyTest(inst, `/notifications/anonymous-hub, ${way.label}: connects, receives the auth response`, async (h) => {
        const { requestId, c } = anonymousConnection(h, inst, way);
        await c.start();
        assert.equal(c.conn.connection.transport?.constructor?.name, TRANSPORT_CLASS[way.transport]);
        await expectAuthResponse(c, requestId, inst);
      });
    }
  }

  // Idle connections: a sound proxy keeps a long poll that pushwarden holds for its whole
  // timeout (PUSHWARDEN_LONG_POLL_TIMEOUT, 45 s here) and lets the client poll again; a 30 s
  // read timeout cuts it with 504, which ends the official client's connection. WebSockets and
  // event streams outlive both, since pushwarden pings every 15 s.
  for (const inst of [...byExpect("ok"), ...byExpect("read-timeout")]) {
    const cut = inst.expect === "read-timeout";
    proxyTest(
      inst,
      cut ? "a held long poll is cut with 504 (connection lost); WebSockets and SSE survive past 30 s" : "a long poll held for the whole timeout is answered and polled again; all transports stay up",
      async (h) => {
        const conns = {};
        for (const way of [WAYS[0], WAYS[2], WAYS[3]]) conns[way.transport] = hubConnection(h, inst, way);
        const t0 = Date.now();
        await Promise.all(Object.values(conns).map(({ c }) => c.start()));
        const lp = conns.LongPolling.c;
        // pushwarden's empty answer to a held poll: the client logs it as empty data (8.x) or
        // as a poll timeout, then polls again.
        const reissued = () => lp.logger.lines.some((l) => /\(LongPolling transport\) (data received\. Binary data of length 0\.|Poll timed out, reissuing)/.test(l));
        if (cut) {
          // the poll after the handshake is held by pushwarden; the proxy gives up at 30 s
          await waitFor(() => lp.events.closed.length > 0, 40_000, "the long-polling connection to be closed by the proxy's 504");
          const elapsed = Date.now() - t0;
          const err = lp.events.closed.items[0];
          assert.match(String(err?.message ?? err), /504/, `the long poll should end with the proxy's 504, got: ${err}`);
          assert.ok(elapsed >= 25_000 && elapsed < ENV.longPollMs, `cut after ${elapsed} ms: expected the proxy's 30 s, before pushwarden's ${ENV.longPollMs} ms`);
          assert.ok(!reissued(), "pushwarden's own empty answer should never have reached the client");
        } else {
          await waitFor(reissued, ENV.longPollMs + 10_000, "the client to log that a held poll ended empty and was reissued");
        }
        // WebSockets and SSE: a Ping after the 30 s mark, still connected.
        for (const t of ["WebSockets", "ServerSentEvents"]) {
          const { c } = conns[t];
          await waitFor(() => c.frames(MESSAGE_TYPE.Ping).some((f) => f.at - t0 > 31_000), 25_000, `${t}: a Ping later than 31 s`);
          assert.equal(c.conn.state, client.signalR.HubConnectionState.Connected, `${t} should still be connected`);
          assert.equal(c.events.closed.length, 0, `${t} closed: ${c.events.closed.items[0]}`);
        }
        for (const t of cut ? ["WebSockets", "ServerSentEvents"] : ["WebSockets", "ServerSentEvents", "LongPolling"]) {
          await expectUserNotification(conns[t].c, conns[t].u, inst);
        }
      },
      { timeout: 120_000 },
    );
  }

  for (const inst of byExpect("no-upgrade")) {
    for (const [hub, make] of [
      ["/notifications/hub", hubConnection],
      ["/notifications/anonymous-hub", anonymousConnection],
    ]) {
      proxyTest(inst, `${hub}: WebSockets fail (Bitwarden's skipNegotiation and negotiated); SSE still connects`, async (h) => {
        for (const way of [WAYS[0], WAYS[1]]) {
          const { c } = make(h, inst, way);
          const err = await expectReject(c.conn.start(), 10_000, `${way.label} start()`);
          assert.match(String(err?.message ?? err), /WebSocket|transport/i, `${way.label}: ${err}`);
          assert.equal(c.conn.state, client.signalR.HubConnectionState.Disconnected);
        }
        const { c } = make(h, inst, WAYS[2]);
        await c.start();
      });
    }
  }

  for (const inst of byExpect("no-anonymous")) {
    proxyTest(inst, "/notifications/anonymous-hub: no transport connects (404); /notifications/hub still works", async (h) => {
      for (const way of WAYS) {
        const { c } = anonymousConnection(h, inst, way);
        const err = await expectReject(c.conn.start(), 10_000, `anonymous-hub ${way.label} start()`);
        // negotiate reports the status; a refused upgrade is reported without it (checked below)
        if (!way.skipNegotiation) assert.match(String(err?.message ?? err), /404/, `anonymous-hub ${way.label}: ${err}`);
      }
      // the upgrade Bitwarden's client sends, with the `ws` package the client itself uses
      const raw = rawWebSocket(client.WebSocket, `${inst.base.replace(/^http/, "ws")}/notifications/anonymous-hub?Token=${randomUUID()}`);
      const refused = await expectReject(raw.opened, 10_000, "raw WebSocket upgrade on /notifications/anonymous-hub").finally(() => raw.terminate());
      assert.match(String(refused?.message ?? refused), /HTTP 404/);
      const { u, c } = hubConnection(h, inst, WAYS[0]);
      await c.start();
      await expectUserNotification(c, u, null); // /notifications/send is not routed either: post straight to pushwarden
    });
  }

  for (const inst of byExpect("buffering")) {
    proxyTest(inst, "ServerSentEvents: the handshake answer is held in the proxy's buffer, start() never completes; WebSockets work", async (h) => {
      // Both at once, and given up on (cleanup stops them) before pushwarden's 15 s handshake
      // timeout ends the streams: the 8.x client throws from an event handler when an event
      // stream ends while it is still connecting.
      const attempts = [hubConnection(h, inst, WAYS[2]).c, anonymousConnection(h, inst, WAYS[2]).c].map((c) =>
        c.conn.start().then(
          () => `${c.label}: started`,
          (e) => `${c.label}: failed: ${e?.message ?? e}`,
        ),
      );
      let timer;
      const outcome = await Promise.race([...attempts, new Promise((r) => (timer = setTimeout(() => r("both pending after 10 s"), 10_000)))]);
      clearTimeout(timer);
      assert.doesNotMatch(outcome, /started$/, "SSE start() completed through a buffering proxy");
      await h.cleanup();
      const { u, c } = hubConnection(h, inst, WAYS[0]);
      await c.start();
      await expectUserNotification(c, u, inst);
    });
  }
});
