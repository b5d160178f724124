// 2. Negotiation and every transport x protocol pair the JS client allows.
import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness, expectReject } from "./lib/harness.mjs";
import { send } from "./lib/server.mjs";

const REV = "2026-11-28T10:00:00Z";
const PAIRS = [
  ["WebSockets", "json"],
  ["WebSockets", "msgpack"],
  ["ServerSentEvents", "json"],
  ["LongPolling", "json"],
  ["LongPolling", "msgpack"],
];
const TRANSPORT_CLASS = { WebSockets: "WebSocketTransport", ServerSentEvents: "ServerSentEventsTransport", LongPolling: "LongPollingTransport" };

async function negotiate(server, path, { token, query = "negotiateVersion=1" } = {}) {
  const headers = { "content-type": "text/plain;charset=UTF-8" };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${server.base}${path}/negotiate?${query}`, { method: "POST", headers, signal: AbortSignal.timeout(10_000) });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    /* not json */
  }
  return { status: r.status, text, json };
}

for (const v of clientVersions()) {
  describe(`[${v}] negotiate + transports x protocols`, () => {
    const client = loadClient(v);
    const h = new Harness(client);
    before(() => h.start());
    after(() => h.stop());

    h.test("POST /hub/negotiate?negotiateVersion=1 offers WebSockets, ServerSentEvents, LongPolling", async () => {
      const u = h.user();
      const r = await negotiate(h.server, "/hub", { token: u.token });
      assert.equal(r.status, 200, r.text);
      const n = r.json;
      assert.equal(n.negotiateVersion, 1);
      assert.equal(typeof n.connectionId, "string");
      assert.equal(typeof n.connectionToken, "string");
      assert.notEqual(n.connectionId, n.connectionToken, "connectionToken must not equal the public connectionId");
      const byName = Object.fromEntries((n.availableTransports ?? []).map((t) => [t.transport, [...t.transferFormats].sort()]));
      assert.deepEqual(byName, { WebSockets: ["Binary", "Text"], ServerSentEvents: ["Text"], LongPolling: ["Binary", "Text"] }, r.text);
      assert.ok(!n.useStatefulReconnect, "useStatefulReconnect must not be offered unless requested");
      const s = await negotiate(h.server, "/notifications/hub", { token: u.token, query: "negotiateVersion=1&useStatefulReconnect=true" });
      assert.equal(s.status, 200, s.text);
      assert.equal(s.json.useStatefulReconnect, true, `stateful reconnect requested but not granted: ${s.text}`);
    });

    h.test("negotiate on /hub without a token is 401; /anonymous-hub negotiates without one", async () => {
      const r = await negotiate(h.server, "/hub");
      assert.equal(r.status, 401, r.text);
      const a = await negotiate(h.server, "/anonymous-hub", { query: `negotiateVersion=1&Token=${randomUUID()}` });
      assert.equal(a.status, 200, a.text);
      assert.equal(typeof a.json?.connectionToken, "string", a.text);
    });

    for (const path of ["/hub", "/notifications/hub"]) {
      for (const [transport, protocol] of PAIRS) {
        h.test(`${path} ${transport}/${protocol}: negotiated connection receives a notification`, async () => {
          const u = h.user();
          const c = h.connection({ path, transport, protocol, token: u.token, label: `${transport}/${protocol}` });
          await c.start();
          const inner = c.conn.connection; // HttpConnection
          assert.equal(inner.transport?.constructor?.name, TRANSPORT_CLASS[transport]);
          assert.equal(typeof c.conn.connectionId, "string", "negotiate should have produced a connectionId");

          const id = randomUUID();
          const ctx = `ctx-${transport}-${protocol}`;
          const delivered = await send(h.server, {
            type: 0,
            payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV },
            contextId: ctx,
          });
          const m = await c.received();
          if (protocol === "json") {
            assert.deepEqual(Object.keys(m).sort(), ["contextId", "payload", "type"], `JSON envelope keys: ${JSON.stringify(m)}`);
            assert.equal(m.type, 0);
            assert.equal(m.contextId, ctx);
            assert.equal(m.payload.userId, u.userId);
            assert.equal(m.payload.id, id);
            assert.equal(m.payload.organizationId, null);
            assert.equal(typeof m.payload.revisionDate, "string");
            assert.equal(Date.parse(m.payload.revisionDate), Date.parse(REV), `revisionDate ${m.payload.revisionDate}`);
          } else {
            assert.deepEqual(Object.keys(m).sort(), ["ContextId", "Payload", "Type"], `MessagePack envelope keys: ${JSON.stringify(m)}`);
            assert.equal(m.Type, 0);
            assert.equal(m.ContextId, ctx);
            assert.equal(m.Payload.UserId, u.userId);
            assert.equal(m.Payload.Id, id);
            assert.ok(m.Payload.RevisionDate instanceof Date, `RevisionDate: ${m.Payload.RevisionDate}`);
            assert.equal(m.Payload.RevisionDate.getTime(), Date.parse(REV));
          }
          assert.equal(delivered, 1);

          // a second message on the same connection (long polling: next poll; SSE: next event)
          const id2 = randomUUID();
          await send(h.server, { type: 1, payload: { id: id2, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null });
          const m2 = await c.received();
          assert.equal(protocol === "json" ? m2.payload.id : m2.Payload.Id, id2);

          await c.conn.stop();
          const closeErr = await c.events.closed.next(5_000, "onclose after stop()");
          assert.equal(closeErr, null, `stop() should close cleanly, onclose got: ${closeErr}`);
        });
      }
    }

    h.test("ServerSentEvents/MessagePack is refused by the client itself", async () => {
      const u = h.user();
      const c = h.connection({ path: "/hub", transport: "ServerSentEvents", protocol: "msgpack", token: u.token, label: "SSE/msgpack" });
      const err = await expectReject(c.conn.start(), 10_000, "start() SSE+MessagePack");
      assert.match(String(err?.message ?? err), /ServerSentEvents|transports|Binary/i);
      assert.equal(c.conn.state, client.signalR.HubConnectionState.Disconnected);
    });
  });
}
