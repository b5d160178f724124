// 3. Anonymous hub (login with device): /anonymous-hub?Token=<authRequestId>, type 16 -> AuthRequestResponseRecieved.
import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness } from "./lib/harness.mjs";
import { send } from "./lib/server.mjs";

const REV = "2026-11-28T10:00:00Z";

for (const v of clientVersions()) {
  describe(`[${v}] anonymous hub (AuthRequestResponseRecieved)`, () => {
    const client = loadClient(v);
    const h = new Harness(client);
    before(() => h.start());
    after(() => h.stop());

    // anonymous-hub.service.ts: skipNegotiation, WebSockets, MessagePack, no accessTokenFactory
    const anon = (path, token, protocol = "msgpack", label) =>
      h.connection({ url: `${h.server.base}${path}?Token=${token}`, skipNegotiation: true, transport: "WebSockets", protocol, label: label ?? `anon ${path} ${protocol}` });

    h.test("type 16 reaches only connections whose Token equals payload.id; not the user's /hub connection", async () => {
      const u = h.user();
      const authRequestId = randomUUID();
      const otherRequestId = randomUUID();
      const a = anon("/notifications/anonymous-hub", authRequestId, "msgpack", "anon A (token=id)");
      const a2 = anon("/anonymous-hub", authRequestId, "json", "anon A2 json (token=id)");
      const b = anon("/anonymous-hub", otherRequestId, "msgpack", "anon B (other token)");
      const hub = h.connection({ path: "/notifications/hub", skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", token: u.token, label: "user /hub" });
      await Promise.all([a.start(), a2.start(), b.start(), hub.start()]);

      const delivered = await send(h.server, { type: 16, payload: { id: authRequestId, userId: u.userId }, contextId: null });
      const m = await a.inbox.AuthRequestResponseRecieved.next(10_000, "AuthRequestResponseRecieved on A");
      assert.equal(m.Type, 16);
      assert.equal(m.Payload.Id, authRequestId);
      assert.equal(m.Payload.UserId, u.userId);
      assert.ok("ContextId" in m && m.ContextId === null, `ContextId: ${JSON.stringify(m.ContextId)}`);
      const mj = await a2.inbox.AuthRequestResponseRecieved.next(10_000, "AuthRequestResponseRecieved on A2 (json)");
      assert.equal(mj.type, 16);
      assert.equal(mj.payload.id, authRequestId);
      assert.equal(mj.payload.userId, u.userId);
      assert.equal(delivered, 2, "delivered should count the two anonymous connections with that Token");

      // Sentinels: per-connection ordering means any stray type-16 would arrive before them.
      assert.equal(await send(h.server, { type: 16, payload: { id: otherRequestId, userId: u.userId }, contextId: null }), 1);
      const mb = await b.inbox.AuthRequestResponseRecieved.next(10_000, "sentinel on B");
      assert.equal(mb.Payload.Id, otherRequestId, "connection with another Token received the first auth response");
      const sid = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id: sid, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      const mh = await hub.received(10_000, "sentinel on /hub");
      assert.equal(mh.Type, 0, `/hub got type ${mh.Type} before the sentinel (type 16 must not go to /hub)`);
      assert.equal(mh.Payload.Id, sid);
      assert.equal(hub.inbox.AuthRequestResponseRecieved.length, 0, "/hub connection got AuthRequestResponseRecieved");
      assert.equal(a.inbox.ReceiveMessage.length + b.inbox.ReceiveMessage.length, 0, "anonymous connections got ReceiveMessage");
      assert.equal(a.inbox.AuthRequestResponseRecieved.length, 1);
      assert.equal(b.inbox.AuthRequestResponseRecieved.length, 1);
    });

    h.test("anonymous hub connects without any token and gets no user notifications", async () => {
      const u = h.user();
      const a = anon("/anonymous-hub", randomUUID());
      await a.start();
      assert.equal(a.conn.state, client.signalR.HubConnectionState.Connected);
      // a user notification for a random user reaches nobody; the anonymous connection is not a user
      assert.equal(await send(h.server, { type: 0, payload: { id: randomUUID(), userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 0);
    });

    h.test("lowercase ?token= query key also joins the group (ASP.NET query keys are case-insensitive)", async () => {
      const id = randomUUID();
      const a = h.connection({ url: `${h.server.base}/anonymous-hub?token=${id}`, skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", label: "anon lowercase token" });
      await a.start();
      assert.equal(await send(h.server, { type: 16, payload: { id, userId: randomUUID() }, contextId: null }), 1);
      const m = await a.inbox.AuthRequestResponseRecieved.next();
      assert.equal(m.Payload.Id, id);
    });
  });
}
