// 1. Bitwarden's exact client configuration (web vault / browser extension / desktop):
//    skipNegotiation + WebSockets + MessagePack on <notifications>/hub, ReceiveMessage.
import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness } from "./lib/harness.mjs";
import { send, postSend } from "./lib/server.mjs";

const REV = "2026-11-28T10:00:00Z";

for (const v of clientVersions()) {
  describe(`[${v}] Bitwarden client configuration (skipNegotiation, WebSockets, MessagePack)`, () => {
    const client = loadClient(v);
    const h = new Harness(client);
    before(() => h.start());
    after(() => h.stop());

    h.test("pinned client packages are the ones installed", () => {
      assert.equal(client.installed.signalr, client.declared.signalr, "installed @microsoft/signalr differs from package.json pin (run npm ci)");
      assert.equal(client.installed.msgpack, client.declared.msgpack, "installed msgpack protocol differs from package.json pin (run npm ci)");
      assert.ok(client.sameSignalRInstance, "msgpack protocol resolves a different @microsoft/signalr copy");
      assert.equal(typeof client.WebSocket, "function", "ws did not resolve from @microsoft/signalr");
      assert.equal(typeof client.EventSource, "function", "eventsource did not resolve from @microsoft/signalr");
    });

    // What signalr-connection.service.ts builds, verbatim.
    const bitwarden = (path, token) => {
      const { signalR, MessagePackHubProtocol } = client;
      return new signalR.HubConnectionBuilder()
        .withUrl(h.server.base + path, {
          accessTokenFactory: () => token,
          skipNegotiation: true,
          transport: signalR.HttpTransportType.WebSockets,
        })
        .withHubProtocol(new MessagePackHubProtocol())
        .configureLogging({ log() {} }) // Bitwarden's SignalRLogger (its body is commented out)
        .build();
    };

    for (const path of ["/notifications/hub", "/hub"]) {
      h.test(`${path}: verbatim Bitwarden builder receives type 0 (SyncCipherUpdate) with PascalCase keys and RevisionDate as Date`, async () => {
        const u = h.user();
        const conn = bitwarden(path, u.token);
        h.onCleanup(() => conn.stop());
        const got = [];
        let wake;
        conn.on("ReceiveMessage", (m) => {
          got.push(m);
          wake?.();
        });
        conn.on("Heartbeat", () => {});
        await conn.start();
        assert.equal(conn.state, client.signalR.HubConnectionState.Connected);

        const id = randomUUID();
        const delivered = await send(h.server, {
          type: 0,
          payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV },
          contextId: "dev-1",
        });
        await new Promise((res, rej) => {
          if (got.length) return res();
          const t = setTimeout(() => rej(new Error(`no ReceiveMessage within 10 s (POST /send delivered=${delivered})`)), 10_000);
          wake = () => {
            clearTimeout(t);
            res();
          };
        });
        const m = got[0];
        assert.equal(typeof m, "object");
        assert.deepEqual(Object.keys(m).sort(), ["ContextId", "Payload", "Type"], `envelope keys: ${JSON.stringify(Object.keys(m))}`);
        assert.equal(m.Type, 0);
        assert.equal(m.ContextId, "dev-1");
        assert.equal(m.Payload.Id, id);
        assert.equal(m.Payload.UserId, u.userId);
        assert.ok("OrganizationId" in m.Payload && m.Payload.OrganizationId === null, `OrganizationId should be nil: ${JSON.stringify(m.Payload)}`);
        assert.ok("CollectionIds" in m.Payload && m.Payload.CollectionIds === null, `CollectionIds should be nil: ${JSON.stringify(m.Payload)}`);
        assert.ok(m.Payload.RevisionDate instanceof Date, `RevisionDate should decode as a Date (msgpack timestamp ext), got ${typeof m.Payload.RevisionDate}: ${m.Payload.RevisionDate}`);
        assert.equal(m.Payload.RevisionDate.getTime(), Date.parse(REV));
        assert.equal(delivered, 1, "delivered should count exactly the one connection of this user");
        assert.equal(got.length, 1, "exactly one ReceiveMessage");
      });
    }

    h.test("browser wire form: token in ?access_token= (no Authorization header) is accepted", async () => {
      // In Node the client sends the token as an Authorization header; browsers send ?access_token=.
      const u = h.user();
      const c = h.connection({
        url: `${h.server.base}/notifications/hub?access_token=${encodeURIComponent(u.token)}`,
        skipNegotiation: true,
        transport: "WebSockets",
        protocol: "msgpack",
        label: "query-token",
      });
      await c.start();
      const id = randomUUID();
      assert.equal(await send(h.server, { type: 1, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      const m = await c.received();
      assert.equal(m.Type, 1);
      assert.equal(m.Payload.Id, id);
      assert.ok("ContextId" in m && m.ContextId === null, `ContextId should be nil, got ${JSON.stringify(m.ContextId)}`);
    });

    h.test("routing: another user's connection does not receive the notification", async () => {
      const a = h.user();
      const b = h.user();
      const ca = h.connection({ path: "/notifications/hub", skipNegotiation: true, transport: "WebSockets", token: a.token, label: "user-a" });
      const cb = h.connection({ path: "/notifications/hub", skipNegotiation: true, transport: "WebSockets", token: b.token, label: "user-b" });
      await Promise.all([ca.start(), cb.start()]);
      const idA = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id: idA, userId: a.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      assert.equal((await ca.received()).Payload.Id, idA);
      // sentinel for b: per-connection ordering means anything for b sent earlier would arrive first
      const idB = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id: idB, userId: b.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      const mb = await cb.received();
      assert.equal(mb.Payload.Id, idB, "user b received user a's notification first");
      assert.equal(ca.inbox.ReceiveMessage.length, 1, "user a received user b's notification");
    });

    h.test("routing: two connections of the same user both receive; PascalCase envelope on /send accepted", async () => {
      const u = h.user();
      const c1 = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: u.token, label: "dev1" });
      const c2 = h.connection({ path: "/notifications/hub", skipNegotiation: true, transport: "WebSockets", token: h.token({ sub: u.userId }), label: "dev2" });
      await Promise.all([c1.start(), c2.start()]);
      const id = randomUUID();
      const delivered = await send(h.server, {
        Type: 2,
        Payload: { Id: id, UserId: u.userId, OrganizationId: null, CollectionIds: null, RevisionDate: REV },
        ContextId: "dev-x",
      });
      for (const c of [c1, c2]) {
        const m = await c.received();
        assert.equal(m.Type, 2);
        assert.equal(m.ContextId, "dev-x");
        assert.equal(m.Payload.Id, id);
        assert.equal(m.Payload.UserId, u.userId);
      }
      assert.equal(delivered, 2);
    });

    h.test("routing: type 18 goes to Organization_{orgId} group from orguser/orgadmin claims (string and array)", async () => {
      const org = randomUUID();
      const org2 = randomUUID();
      const m1 = h.user({ orguser: org });
      const m2 = h.user({ orgadmin: [org2, org] });
      const out = h.user({ orgowner: org2 });
      const c1 = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: m1.token, label: "orguser" });
      const c2 = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: m2.token, label: "orgadmin" });
      const c3 = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: out.token, label: "other-org" });
      await Promise.all([c1.start(), c2.start(), c3.start()]);
      const delivered = await send(h.server, { type: 18, payload: { organizationId: org, enabled: true }, contextId: null });
      for (const c of [c1, c2]) {
        const m = await c.received();
        assert.equal(m.Type, 18);
        assert.equal(m.Payload.OrganizationId, org);
        assert.equal(m.Payload.Enabled, true);
      }
      // sentinel for the outsider (org2)
      assert.equal(await send(h.server, { type: 18, payload: { organizationId: org2, enabled: false }, contextId: null }), 2);
      const m3 = await c3.received();
      assert.equal(m3.Payload.OrganizationId, org2, "connection outside the org received its notification");
      assert.equal(delivered, 2);
    });

    h.test("contextId is not used to filter delivery (the client ignores its own device's messages)", async () => {
      const u = h.user({ device: "dev-self" });
      const c = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: u.token, label: "device dev-self" });
      await c.start();
      const id = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: "dev-self" }), 1);
      const m = await c.received();
      assert.equal(m.Payload.Id, id);
      assert.equal(m.ContextId, "dev-self");
    });

    h.test("routing: type 20 (Notification) by installation id and client type (Installation_ / Installation_ClientType_ / UserClientType_ groups)", async () => {
      const inst = h.server.installationId;
      const web = h.user({ devicetype: "ChromeBrowser" }); // DeviceType 9 -> ClientType Web
      const ext = h.user({ devicetype: "ChromeExtension" }); // DeviceType 2 -> ClientType Browser
      const cw = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: web.token, label: "web vault" });
      const ce = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", token: ext.token, label: "extension" });
      await Promise.all([cw.start(), ce.start()]);
      const note = (extra) => ({
        type: 20,
        payload: { id: randomUUID(), priority: 0, global: false, userId: null, organizationId: null, installationId: null, taskId: null, title: "t", body: "b", creationDate: REV, revisionDate: REV, readDate: null, deletedDate: null, ...extra },
        contextId: null,
      });
      // all clients of this installation
      const all = note({ installationId: inst, clientType: 0 });
      assert.equal(await send(h.server, all), 2, "installation-wide notification should reach both connections");
      for (const c of [cw, ce]) {
        const m = await c.received();
        assert.equal(m.Type, 20);
        assert.equal(m.Payload.Id, all.payload.id);
        assert.equal(m.Payload.InstallationId, inst);
      }
      // another installation: nobody
      assert.equal(await send(h.server, note({ installationId: randomUUID(), clientType: 0 })), 0);
      // this installation, Web clients only (ClientType 1)
      const webOnly = note({ installationId: inst, clientType: 1 });
      assert.equal(await send(h.server, webOnly), 1);
      assert.equal((await cw.received()).Payload.Id, webOnly.payload.id);
      // user + ClientType Browser (2): only the extension user's Browser connections
      const extOnly = note({ userId: ext.userId, clientType: 2 });
      assert.equal(await send(h.server, extOnly), 1);
      assert.equal((await ce.received()).Payload.Id, extOnly.payload.id);
      // same user, wrong client type: nobody
      assert.equal(await send(h.server, note({ userId: ext.userId, clientType: 1 })), 0);
      assert.equal(cw.inbox.ReceiveMessage.length, 2);
      assert.equal(ce.inbox.ReceiveMessage.length, 2);
    });

    h.test("POST /send: wrong or missing API key is refused, malformed JSON is 400 {error}", async () => {
      const body = { type: 0, payload: { id: randomUUID(), userId: randomUUID(), revisionDate: REV }, contextId: null };
      const wrong = await postSend(h.server, body, { key: "not-the-key" });
      assert.ok([401, 403].includes(wrong.status), `wrong key -> ${wrong.status} ${wrong.text}`);
      const none = await postSend(h.server, body, { key: null });
      assert.ok([401, 403].includes(none.status), `no key -> ${none.status} ${none.text}`);
      const bad = await postSend(h.server, "{not json");
      assert.equal(bad.status, 400, `malformed JSON -> ${bad.status} ${bad.text}`);
      assert.equal(typeof bad.json?.error, "string", `400 body should be {"error":...}: ${bad.text}`);
    });

    h.test("GET /metrics serves Prometheus text", async () => {
      const r = await fetch(`${h.server.base}/metrics`, { signal: AbortSignal.timeout(10_000) });
      const text = await r.text();
      assert.equal(r.status, 200);
      assert.match(r.headers.get("content-type") ?? "", /^text\/plain/);
      assert.ok(/^# (TYPE|HELP) /m.test(text) || /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [0-9.eE+-]+$/m.test(text), `not Prometheus exposition text: ${text.slice(0, 300)}`);
    });
  });
}
