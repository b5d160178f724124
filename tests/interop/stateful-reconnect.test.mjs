// 4. Stateful reconnect (Ack/Sequence) across an abruptly dropped socket, via a TCP proxy.
import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness, MESSAGE_TYPE } from "./lib/harness.mjs";
import { send } from "./lib/server.mjs";
import { startProxy } from "./lib/proxy.mjs";
import { sleep } from "./lib/util.mjs";

const REV = "2026-11-28T10:00:00Z";

for (const v of clientVersions()) {
  describe(`[${v}] stateful reconnect (withStatefulReconnect)`, () => {
    const client = loadClient(v);
    const h = new Harness(client);
    before(() => h.start());
    after(() => h.stop());

    for (const protocol of ["msgpack", "json"]) {
      h.test(`${protocol}: messages sent while the socket is down arrive exactly once, in order`, async () => {
        assert.ok(client.hasStatefulReconnect, "client has no withStatefulReconnect()");
        const proxy = await startProxy(h.server.port);
        h.onCleanup(() => proxy.close());
        const u = h.user();
        const c = h.connection({ url: `${proxy.base}/hub`, transport: "WebSockets", protocol, token: u.token, stateful: true, label: `stateful ${protocol}` });
        await c.start();
        const features = c.conn.connection.features;
        assert.equal(features.reconnect, true, "server did not grant useStatefulReconnect in the negotiate response");

        const ids = [];
        const notify = async () => {
          const id = randomUUID();
          ids.push(id);
          return await send(h.server, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: `seq-${ids.length - 1}` });
        };
        const idOf = (m) => (protocol === "json" ? m.payload.id : m.Payload.Id);

        // m0 before the drop; drop right away so it is most likely still un-acked (client acks <= 1/s)
        assert.equal(await notify(), 1);
        await c.inbox.ReceiveMessage.waitForCount(1, 10_000, "m0 before drop");

        const forwardedBefore = proxy.forwarded;
        proxy.hold();
        const dropped = proxy.dropAll();
        assert.ok(dropped >= 1, "proxy had no open socket to drop");
        await sleep(300); // both ends notice the dead socket
        const d1 = await notify();
        const d2 = await notify();
        await sleep(300);
        assert.ok(proxy.held >= 1, `client did not try to reconnect its WebSocket while down (held=${proxy.held})`);
        proxy.release();

        await c.inbox.ReceiveMessage.waitForCount(3, 10_000, "m1, m2 after reconnect");
        assert.ok(proxy.forwarded > forwardedBefore, "reconnect did not go through the proxy");
        // one more after the reconnect; any duplicate replay of m0..m2 would arrive before it
        assert.equal(await notify(), 1);
        await c.inbox.ReceiveMessage.waitForCount(4, 10_000, "m3 after reconnect");
        await sleep(500);

        const got = c.inbox.ReceiveMessage.items.map(idOf);
        assert.deepEqual(got, ids, "notifications must arrive exactly once and in order");
        assert.equal(c.conn.state, client.signalR.HubConnectionState.Connected);
        assert.equal(c.events.closed.length, 0, `onclose fired: ${c.events.closed.items}`);
        assert.equal(c.events.reconnecting.length, 0, "onreconnecting fired (stateful reconnect must be invisible)");
        assert.ok(c.frames(MESSAGE_TYPE.Sequence).length >= 1, "server sent no Sequence message after the reconnect");
        assert.equal(d1, 1, "POST /send while the socket was down should still count the (buffered) connection");
        assert.equal(d2, 1);
      });
    }

    h.test("stateful connection survives idle periods and the client's Acks; later notifications still arrive", async () => {
      // The client sends pings (not trackable) and no invocations; make sure the server does not
      // send an Ack/Sequence the client would reject, and the connection survives > 2 s.
      const u = h.user();
      const c = h.connection({ path: "/hub", transport: "WebSockets", protocol: "msgpack", token: u.token, stateful: true, keepAliveMs: 1000, label: "stateful idle" });
      await c.start();
      await sleep(2500);
      const id = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      assert.equal((await c.received()).Payload.Id, id);
      await sleep(1500); // client sends its Ack within ~1 s; server must accept it
      const id2 = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id: id2, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      assert.equal((await c.received()).Payload.Id, id2);
      assert.equal(c.events.closed.length, 0);
      assert.equal(c.conn.state, client.signalR.HubConnectionState.Connected);
    });

    h.test("no stateful reconnect without withStatefulReconnect(): handshake version 1 and a drop closes the connection", async () => {
      const proxy = await startProxy(h.server.port);
      h.onCleanup(() => proxy.close());
      const u = h.user();
      const c = h.connection({ url: `${proxy.base}/hub`, transport: "WebSockets", protocol: "msgpack", token: u.token, label: "not stateful" });
      await c.start();
      assert.ok(!c.conn.connection.features.reconnect, "client thinks stateful reconnect is on");
      proxy.dropAll();
      const err = await c.events.closed.next(10_000, "onclose after drop");
      assert.ok(err, "onclose should report an error for an abrupt drop");
    });
  });
}
