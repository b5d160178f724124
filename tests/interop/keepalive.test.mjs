// 5. Keep-alive, client timeout and handshake timeout with shortened server config.
import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness, MESSAGE_TYPE } from "./lib/harness.mjs";
import { send } from "./lib/server.mjs";
import { rawWebSocket, RS } from "./lib/rawws.mjs";
import { sleep, withTimeout } from "./lib/util.mjs";

const REV = "2026-11-28T10:00:00Z";
const TIMING = {
  PUSHWARDEN_KEEP_ALIVE_INTERVAL: "1s",
  PUSHWARDEN_CLIENT_TIMEOUT: "3s",
  PUSHWARDEN_HANDSHAKE_TIMEOUT: "2s",
  PUSHWARDEN_HEARTBEAT_INTERVAL: "120s",
};
const PING = JSON.stringify({ type: 6 }) + RS;
const HANDSHAKE = JSON.stringify({ protocol: "json", version: 1 }) + RS;

for (const v of clientVersions()) {
  describe(`[${v}] keep-alive and timeouts (keepalive 1s, client timeout 3s, handshake timeout 2s)`, () => {
    const client = loadClient(v);
    const h = new Harness(client, TIMING);
    before(() => h.start());
    after(() => h.stop());

    const hubWsUrl = (token) => `${h.server.wsBase}/hub?access_token=${encodeURIComponent(token)}`;

    for (const [transport, protocol, skipNegotiation] of [
      ["WebSockets", "msgpack", true],
      ["ServerSentEvents", "json", false],
    ]) {
      h.test(`${transport}/${protocol}: server Pings keep a client with serverTimeout 2500 ms connected for 6 s idle`, async () => {
        const u = h.user();
        const c = h.connection({ path: "/hub", transport, protocol, skipNegotiation, token: u.token, serverTimeoutMs: 2500, keepAliveMs: 1000, label: `idle ${transport}/${protocol}` });
        await c.start();
        const t0 = Date.now();
        await sleep(6000);
        assert.equal(c.events.closed.length, 0, `connection closed while idle: ${c.events.closed.items[0]}`);
        assert.equal(c.conn.state, client.signalR.HubConnectionState.Connected);
        const pings = c.frames(MESSAGE_TYPE.Ping).filter((f) => f.at >= t0);
        assert.ok(pings.length >= 3, `expected >= 3 server Pings in 6 s with a 1 s keep-alive, got ${pings.length}`);
        const id = randomUUID();
        assert.equal(await send(h.server, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
        const m = await c.received();
        assert.equal(protocol === "json" ? m.payload.id : m.Payload.Id, id);
      });
    }

    h.test("LongPolling/json: a long-polling client (which never sends Pings) is not timed out after 5 s idle", async () => {
      const u = h.user();
      const c = h.connection({ path: "/hub", transport: "LongPolling", protocol: "json", token: u.token, label: "idle LongPolling" });
      await c.start();
      await sleep(5000);
      assert.equal(c.events.closed.length, 0, `long-polling connection closed while idle: ${c.events.closed.items[0]}`);
      const id = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      assert.equal((await c.received()).payload.id, id);
    });

    h.test("raw WebSocket: handshake, then silence -> server closes after the 3 s client timeout", async () => {
      const u = h.user();
      const r = rawWebSocket(client.WebSocket, hubWsUrl(u.token));
      h.onCleanup(() => r.terminate());
      await withTimeout(r.opened, 5000, "raw ws open");
      r.send(HANDSHAKE);
      const hs = await withTimeout(r.waitMessage(() => true), 5000, "handshake response");
      assert.equal(hs.text.split(RS)[0], "{}", `handshake response: ${JSON.stringify(hs.text)}`);
      const tHs = hs.at;
      const cl = await withTimeout(r.closed, 10_000, "server closing the silent connection");
      const elapsed = cl.at - tHs;
      const pings = r.hubMessages().filter((m) => m.type === 6).length;
      assert.ok(elapsed >= 2500 && elapsed <= 8000, `closed ${elapsed} ms after the handshake (client timeout 3 s); code=${cl.code} messages=${JSON.stringify(r.hubMessages())}`);
      assert.ok(pings >= 1, `no server Ping during ${elapsed} ms with 1 s keep-alive`);
    });

    h.test("raw WebSocket: handshake + one Ping (as the JS client does), then silence -> closed after the client timeout", async () => {
      const u = h.user();
      const r = rawWebSocket(client.WebSocket, hubWsUrl(u.token));
      h.onCleanup(() => r.terminate());
      await withTimeout(r.opened, 5000, "raw ws open");
      r.send(HANDSHAKE);
      await withTimeout(r.waitMessage((t) => t.startsWith("{}")), 5000, "handshake response");
      r.send(PING);
      const tPing = Date.now();
      const cl = await withTimeout(r.closed, 10_000, "server closing the silent connection");
      const elapsed = cl.at - tPing;
      assert.ok(elapsed >= 2500 && elapsed <= 8000, `closed ${elapsed} ms after the last client message (client timeout 3 s); code=${cl.code}`);
    });

    h.test("raw WebSocket: a client that pings every 1 s stays connected past the client timeout (control)", async () => {
      const u = h.user();
      const r = rawWebSocket(client.WebSocket, hubWsUrl(u.token));
      h.onCleanup(() => r.terminate());
      await withTimeout(r.opened, 5000, "raw ws open");
      r.send(HANDSHAKE);
      await withTimeout(r.waitMessage((t) => t.startsWith("{}")), 5000, "handshake response");
      const timer = setInterval(() => r.isOpen && r.send(PING), 1000);
      h.onCleanup(() => clearInterval(timer));
      const outcome = await Promise.race([r.closed.then((c) => ({ closed: c })), sleep(5500).then(() => null)]);
      clearInterval(timer);
      assert.equal(outcome, null, `closed although the client pinged every second: ${JSON.stringify(outcome)}`);
      assert.ok(r.isOpen);
    });

    h.test("raw WebSocket: no handshake at all -> server closes after the 2 s handshake timeout", async () => {
      const u = h.user();
      const r = rawWebSocket(client.WebSocket, hubWsUrl(u.token));
      h.onCleanup(() => r.terminate());
      const tOpen = await withTimeout(r.opened, 5000, "raw ws open");
      const cl = await withTimeout(r.closed, 10_000, "server closing the connection without handshake");
      const elapsed = cl.at - tOpen;
      assert.ok(elapsed >= 1500 && elapsed <= 5000, `closed ${elapsed} ms after open (handshake timeout 2 s); code=${cl.code} messages=${JSON.stringify(r.messages.map((m) => m.text))}`);
      assert.ok(!r.messages.some((m) => m.text.startsWith("{}")), "server sent a successful handshake response without a handshake");
    });

    h.test("raw WebSocket: anonymous hub also enforces the handshake timeout", async () => {
      const r = rawWebSocket(client.WebSocket, `${h.server.wsBase}/anonymous-hub?Token=${randomUUID()}`);
      h.onCleanup(() => r.terminate());
      const tOpen = await withTimeout(r.opened, 5000, "raw ws open");
      const cl = await withTimeout(r.closed, 10_000, "server closing the connection without handshake");
      const elapsed = cl.at - tOpen;
      assert.ok(elapsed >= 1500 && elapsed <= 5000, `closed ${elapsed} ms after open; code=${cl.code}`);
    });
  });

  describe(`[${v}] Heartbeat (PUSHWARDEN_HEARTBEAT_INTERVAL=1s)`, () => {
    const client = loadClient(v);
    const h = new Harness(client, { PUSHWARDEN_HEARTBEAT_INTERVAL: "1s" });
    before(() => h.start());
    after(() => h.stop());

    h.test("/hub connections get Heartbeat with no arguments; anonymous hub does not", async () => {
      const u = h.user();
      const c = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", token: u.token, label: "hub" });
      const j = h.connection({ path: "/hub", transport: "WebSockets", protocol: "json", token: u.token, label: "hub json" });
      const a = h.connection({ url: `${h.server.base}/anonymous-hub?Token=${randomUUID()}`, skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", label: "anon" });
      await Promise.all([c.start(), j.start(), a.start()]);
      await c.inbox.Heartbeat.waitForCount(2, 5000, "2 Heartbeats (msgpack)");
      await j.inbox.Heartbeat.waitForCount(2, 5000, "2 Heartbeats (json)");
      for (const hb of [...c.inbox.Heartbeat.items, ...j.inbox.Heartbeat.items]) assert.deepEqual(hb, [], `Heartbeat must have no arguments, got ${JSON.stringify(hb)}`);
      assert.equal(a.inbox.Heartbeat.length, 0, "anonymous hub received Heartbeat");
      assert.equal(c.inbox.ReceiveMessage.length, 0, "Heartbeat must not arrive as ReceiveMessage");
    });
  });
}
