// 6. Graceful shutdown: SIGTERM -> every connection gets Close{allowReconnect:true}, server exits 0 promptly.
import { describe, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clientVersions, loadClient } from "./lib/env.mjs";
import { Harness, MESSAGE_TYPE } from "./lib/harness.mjs";
import { rawWebSocket, RS } from "./lib/rawws.mjs";
import { withTimeout } from "./lib/util.mjs";

// Once every client has its Close, nothing is left to wait for: exit should be prompt.
const PROMPT_EXIT_MS = 5000;

function assertCloseAllowReconnect(c) {
  const closes = c.frames(MESSAGE_TYPE.Close);
  assert.equal(closes.length, 1, `${c.label}: expected exactly one Close message, got ${JSON.stringify(closes)}`);
  assert.equal(closes[0].allowReconnect, true, `${c.label}: Close.allowReconnect should be true: ${JSON.stringify(closes[0])}`);
}

function assertPromptExit(exit) {
  assert.equal(exit.timedOut, false, "server did not exit within 10 s of SIGTERM (harness sent SIGKILL)");
  assert.equal(exit.code, 0, `server exit code ${exit.code} signal ${exit.signal}`);
  assert.ok(exit.ms <= PROMPT_EXIT_MS, `server took ${exit.ms} ms to exit after SIGTERM although every client had its Close`);
}

for (const v of clientVersions()) {
  describe(`[${v}] graceful shutdown (SIGTERM)`, () => {
    const client = loadClient(v);
    const hs = [];
    after(() => Promise.all(hs.map((h) => h.stop())));

    const test = (name, fn) => {
      const h = new Harness(client);
      hs.push(h);
      h.test(name, () => fn(h));
    };

    test("WebSocket clients get Close(allowReconnect=true): plain client closes, auto-reconnect client goes to onreconnecting; exit 0", async (h) => {
      await h.start();
      const u = h.user();
      // Bitwarden's own configuration: no automatic reconnect
      const plain = h.connection({ path: "/notifications/hub", skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", token: u.token, label: "bitwarden (no auto-reconnect)" });
      // JSON client with automatic reconnect; a long first delay keeps it in Reconnecting
      const auto = h.connection({ path: "/hub", transport: "WebSockets", protocol: "json", token: u.token, autoReconnect: { nextRetryDelayInMilliseconds: () => 60_000 }, label: "auto-reconnect json" });
      const anon = h.connection({ url: `${h.server.base}/anonymous-hub?Token=${randomUUID()}`, skipNegotiation: true, transport: "WebSockets", protocol: "msgpack", label: "anonymous" });
      await Promise.all([plain.start(), auto.start(), anon.start()]);
      const raw = rawWebSocket(client.WebSocket, `${h.server.wsBase}/hub?access_token=${encodeURIComponent(u.token)}`);
      h.onCleanup(() => raw.terminate());
      await withTimeout(raw.opened, 5000, "raw ws open");
      raw.send(JSON.stringify({ protocol: "json", version: 1 }) + RS);
      await withTimeout(raw.waitMessage((t) => t.startsWith("{}")), 5000, "raw handshake");

      const stopping = h.server.stop({ signal: "SIGTERM", timeoutMs: 10_000 });

      const plainErr = await plain.events.closed.next(10_000, "onclose of the plain client");
      const reconnErr = await auto.events.reconnecting.next(10_000, "onreconnecting of the auto-reconnect client");
      await anon.events.closed.next(10_000, "onclose of the anonymous client");
      const rawClose = await withTimeout(raw.closed, 10_000, "raw ws closed");
      const exit = await stopping;

      for (const c of [plain, auto, anon]) assertCloseAllowReconnect(c);
      const rawCloseMsgs = raw.hubMessages().filter((m) => m.type === 7);
      assert.equal(rawCloseMsgs.length, 1, `raw JSON client: Close messages ${JSON.stringify(raw.hubMessages())}`);
      assert.equal(rawCloseMsgs[0].allowReconnect, true);
      assert.equal(auto.events.closed.length, 0, "auto-reconnect client reported closed instead of reconnecting");
      assert.equal(auto.conn.state, client.signalR.HubConnectionState.Reconnecting);
      assert.equal(reconnErr, null, `onreconnecting error should be empty for a clean Close: ${reconnErr}`);
      assert.equal(plainErr, null, `plain client onclose error should be empty for a clean Close: ${plainErr}`);
      assert.ok(rawClose.code === 1000 || rawClose.code === 1001, `WebSocket close code ${rawClose.code} (expected 1000/1001)`);
      assertPromptExit(exit);
    });

    test("ServerSentEvents and LongPolling clients get Close(allowReconnect=true); exit 0", async (h) => {
      await h.start();
      const u = h.user();
      const sse = h.connection({ path: "/hub", transport: "ServerSentEvents", protocol: "json", token: u.token, label: "sse json" });
      const lp = h.connection({ path: "/hub", transport: "LongPolling", protocol: "json", token: u.token, label: "long polling json" });
      const lpAuto = h.connection({ path: "/hub", transport: "LongPolling", protocol: "msgpack", token: u.token, autoReconnect: { nextRetryDelayInMilliseconds: () => 60_000 }, label: "long polling msgpack auto-reconnect" });
      await Promise.all([sse.start(), lp.start(), lpAuto.start()]);

      const stopping = h.server.stop({ signal: "SIGTERM", timeoutMs: 10_000 });
      const sseErr = await sse.events.closed.next(10_000, "onclose of the SSE client");
      const lpErr = await lp.events.closed.next(10_000, "onclose of the long-polling client");
      const lpReconnErr = await lpAuto.events.reconnecting.next(10_000, "onreconnecting of the long-polling auto-reconnect client");
      const exit = await stopping;

      for (const c of [sse, lp, lpAuto]) assertCloseAllowReconnect(c);
      assert.equal(sseErr, null, `SSE client onclose error: ${sseErr}`);
      assert.equal(lpErr, null, `long-polling client onclose error: ${lpErr}`);
      assert.equal(lpReconnErr, null, `long-polling onreconnecting error: ${lpReconnErr}`);
      assert.equal(lpAuto.events.closed.length, 0);
      assertPromptExit(exit);
    });
  });
}
