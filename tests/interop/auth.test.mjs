// 7. Wrong tokens are refused on skipNegotiation WebSockets (and negotiate); the server keeps serving others.
import { describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID, randomBytes } from "node:crypto";
import http from "node:http";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness, expectReject } from "./lib/harness.mjs";
import { send } from "./lib/server.mjs";
import { signJwt, userClaims } from "./lib/jwt.mjs";

const REV = "2026-11-28T10:00:00Z";

for (const v of clientVersions()) {
  describe(`[${v}] authentication on /hub`, () => {
    const client = loadClient(v);
    const h = new Harness(client);
    before(() => h.start());
    after(() => h.stop());

    const badTokens = () => {
      const sub = randomUUID();
      return {
        "bad signature (other secret)": signJwt("not-the-server-secret-" + randomUUID(), userClaims({ sub })),
        "tampered payload": (() => {
          const t = h.token({ sub }).split(".");
          const claims = JSON.parse(Buffer.from(t[1], "base64url").toString());
          claims.sub = randomUUID();
          return [t[0], Buffer.from(JSON.stringify(claims)).toString("base64url"), t[2]].join(".");
        })(),
        expired: signJwt(h.server.jwtSecret, userClaims({ sub, expiresIn: -600, notBefore: -3600 })),
        "not yet valid (nbf in 1 h)": signJwt(h.server.jwtSecret, userClaims({ sub, notBefore: 3600, expiresIn: 7200 })),
        'alg "none"': signJwt(h.server.jwtSecret, userClaims({ sub }), { alg: "none" }),
        "garbage": "not-a-jwt",
        "missing scope api (policy Application)": signJwt(h.server.jwtSecret, userClaims({ sub, extra: { scope: ["offline_access"] } })),
        "amr not Application/external (policy Application)": signJwt(h.server.jwtSecret, userClaims({ sub, extra: { amr: ["pwd"] } })),
      };
    };

    h.test("bad tokens are refused (start() rejects) and a connected client keeps receiving", async () => {
      const good = h.user();
      const g = h.connection({ path: "/notifications/hub", skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", token: good.token, label: "good client" });
      await g.start();

      const accepted = [];
      for (const [name, token] of Object.entries(badTokens())) {
        for (const [mode, opts] of [
          ["skipNegotiation/WebSockets", { skipNegotiation: true, transport: "WebSockets" }],
          ["negotiate", {}],
        ]) {
          const c = h.connection({ path: "/hub", protocol: "msgpack", token, ...opts, label: `${name} ${mode}` });
          try {
            await expectReject(c.conn.start(), 10_000, `${name} ${mode}`);
            if (c.conn.state !== client.signalR.HubConnectionState.Disconnected) accepted.push(`${name} via ${mode}: state ${c.conn.state}`);
          } catch (e) {
            accepted.push(`${name} via ${mode}: ${e.message}`);
          }
        }
      }
      // no token at all
      const none = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", label: "no token" });
      try {
        await expectReject(none.conn.start(), 10_000, "no token");
      } catch (e) {
        accepted.push(`no token: ${e.message}`);
      }
      assert.deepEqual(accepted, [], "these bad tokens were accepted");

      assert.equal(g.conn.state, client.signalR.HubConnectionState.Connected);
      const id = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id, userId: good.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      const m = await g.received();
      assert.equal(m.Payload.Id, id);
      assert.equal(g.events.closed.length, 0);
    });

    h.test("the WebSocket upgrade with a bad token is answered 401 (not accepted then closed)", async () => {
      const token = signJwt("wrong-" + randomUUID(), userClaims());
      const status = await new Promise((resolve, reject) => {
        const req = http.get(`${h.server.base}/hub?access_token=${encodeURIComponent(token)}`, {
          headers: { connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": randomBytes(16).toString("base64") },
          timeout: 10_000,
        });
        req.on("response", (res) => {
          res.resume();
          resolve(res.statusCode);
        });
        req.on("upgrade", (res, socket) => {
          socket.destroy();
          resolve(res.statusCode);
        });
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", reject);
      });
      const r = { status };
      assert.equal(r.status, 401);
    });

    h.test("numeric devicetype and orgowner array claims are accepted", async () => {
      const u = h.user({ devicetype: "9", orgowner: [randomUUID(), randomUUID()] });
      const c = h.connection({ path: "/hub", skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", token: u.token, label: "numeric devicetype" });
      await c.start();
      const id = randomUUID();
      assert.equal(await send(h.server, { type: 0, payload: { id, userId: u.userId, organizationId: null, collectionIds: null, revisionDate: REV }, contextId: null }), 1);
      assert.equal((await c.received()).Payload.Id, id);
    });
  });
}
