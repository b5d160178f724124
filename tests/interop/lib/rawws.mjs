// Raw WebSocket client (the `ws` package the SignalR client itself uses) for protocol-level checks.
import { deferred } from "./util.mjs";

export const RS = "\x1e";

export function rawWebSocket(WebSocket, url, { headers = {} } = {}) {
  const ws = new WebSocket(url, { headers });
  const t0 = Date.now();
  const messages = [];
  const opened = deferred();
  const closed = deferred();
  let waiters = [];
  ws.on("open", () => opened.resolve(Date.now()));
  ws.on("message", (data) => {
    const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
    messages.push({ at: Date.now(), text });
    for (const w of waiters.splice(0)) w();
  });
  ws.on("unexpected-response", (_req, res) => {
    opened.reject(new Error(`WebSocket upgrade refused: HTTP ${res.statusCode}`));
    closed.resolve({ code: null, status: res.statusCode, at: Date.now() });
  });
  ws.on("error", (e) => {
    opened.reject(e);
  });
  ws.on("close", (code, reason) => closed.resolve({ code, reason: String(reason ?? ""), at: Date.now() }));
  opened.promise.catch(() => {});
  return {
    ws,
    t0,
    messages,
    opened: opened.promise,
    closed: closed.promise,
    get isOpen() {
      return ws.readyState === WebSocket.OPEN;
    },
    send(text) {
      ws.send(text);
    },
    /** Resolve with the first message (index >= from) matching pred. */
    waitMessage(pred, from = 0) {
      return new Promise((resolve) => {
        const check = () => {
          for (let i = from; i < messages.length; i++) if (pred(messages[i].text)) return resolve(messages[i]);
          waiters.push(check);
        };
        check();
      });
    },
    /** JSON hub messages (split on the record separator). */
    hubMessages() {
      const out = [];
      for (const m of messages) for (const part of m.text.split(RS)) if (part) out.push(JSON.parse(part));
      return out;
    },
    terminate() {
      try {
        ws.terminate();
      } catch {
        /* ignore */
      }
    },
  };
}
