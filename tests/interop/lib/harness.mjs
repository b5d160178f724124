// Per-suite harness: one pushwarden server, SignalR connections built from a pinned client,
// cleanup after every test, and server/client log tails appended to failures.
import { it } from "node:test";
import { randomUUID } from "node:crypto";
import { startServer } from "./server.mjs";
import { userToken } from "./jwt.mjs";
import { Inbox, preview, withTimeout } from "./util.mjs";

const LEVEL_NAMES = ["Trace", "Debug", "Information", "Warning", "Error", "Critical", "None"];

export class CaptureLogger {
  constructor(label) {
    this.label = label;
    this.lines = [];
    this.t0 = Date.now();
  }
  log(level, message) {
    const line = `[${((Date.now() - this.t0) / 1000).toFixed(3)}s ${LEVEL_NAMES[level] ?? level}] ${message}`;
    this.lines.push(line);
    if (this.lines.length > 2000) this.lines.splice(0, 1000);
    if (process.env.INTEROP_CLIENT_LOG) process.stderr.write(`[${this.label}] ${line}\n`);
  }
  tail(n = 30) {
    return this.lines.slice(-n).join("\n");
  }
}

/**
 * Record every hub message the client parses (Ping, Close, Ack, Sequence are otherwise invisible).
 * HubConnection calls `this._protocol.parseMessages(data, logger)` for every frame.
 */
export function instrumentProtocol(protocol) {
  const frames = [];
  const orig = protocol.parseMessages.bind(protocol);
  protocol.parseMessages = (input, logger) => {
    const msgs = orig(input, logger);
    for (const m of msgs) frames.push({ at: Date.now(), ...m });
    return msgs;
  };
  protocol.frames = frames;
  return protocol;
}

export const MESSAGE_TYPE = { Invocation: 1, StreamItem: 2, Completion: 3, StreamInvocation: 4, CancelInvocation: 5, Ping: 6, Close: 7, Ack: 8, Sequence: 9 };

export class Harness {
  /**
   * @param client  result of loadClient()
   * @param serverEnv extra env for the server process
   */
  constructor(client, serverEnv = {}) {
    this.client = client;
    this.serverEnv = serverEnv;
    this.server = null;
    this._conns = [];
    this._extraDiag = [];
  }

  async start() {
    this.server = await startServer({ env: this.serverEnv, label: `pushwarden/${this.client.name}` });
    return this.server;
  }

  async stop() {
    await this.cleanup();
    if (this.server) return await this.server.stop();
  }

  token(opts = {}) {
    return userToken(this.server.jwtSecret, opts);
  }

  /** A new user identity with a valid token. */
  user(opts = {}) {
    const sub = opts.sub ?? randomUUID();
    const device = opts.device ?? randomUUID();
    const token = this.token({ ...opts, sub, device });
    return { userId: sub, device, token };
  }

  /**
   * Build a HubConnection.
   * opts: path ("/hub"), url (absolute, overrides path), protocol ("msgpack"|"json"),
   * transport (HttpTransportType name or value), skipNegotiation, token, accessTokenFactory,
   * stateful, autoReconnect (array | policy object | true), serverTimeoutMs, keepAliveMs,
   * methods (names to capture), label.
   */
  connection(opts = {}) {
    const { signalR, MessagePackHubProtocol } = this.client;
    const label = opts.label ?? `${opts.protocol ?? "msgpack"}@${opts.path ?? "/hub"}`;
    const logger = new CaptureLogger(`${this.client.name} ${label}`);
    const url = opts.url ?? `${this.server.base}${opts.path ?? "/hub"}`;
    const httpOpts = { logger, logMessageContent: true };
    if (opts.skipNegotiation) httpOpts.skipNegotiation = true;
    if (opts.transport !== undefined) {
      httpOpts.transport = typeof opts.transport === "string" ? signalR.HttpTransportType[opts.transport] : opts.transport;
    }
    if (opts.accessTokenFactory) httpOpts.accessTokenFactory = opts.accessTokenFactory;
    else if (opts.token) httpOpts.accessTokenFactory = () => opts.token;
    if (opts.httpOptions) Object.assign(httpOpts, opts.httpOptions);

    const protocol = instrumentProtocol(
      (opts.protocol ?? "msgpack") === "msgpack" ? new MessagePackHubProtocol() : new signalR.JsonHubProtocol(),
    );
    let b = new signalR.HubConnectionBuilder().withUrl(url, httpOpts).withHubProtocol(protocol).configureLogging(logger);
    if (opts.stateful) b = b.withStatefulReconnect(typeof opts.stateful === "object" ? opts.stateful : undefined);
    if (opts.autoReconnect) b = opts.autoReconnect === true ? b.withAutomaticReconnect() : b.withAutomaticReconnect(opts.autoReconnect);
    if (opts.serverTimeoutMs && typeof b.withServerTimeout === "function") b = b.withServerTimeout(opts.serverTimeoutMs);
    if (opts.keepAliveMs && typeof b.withKeepAliveInterval === "function") b = b.withKeepAliveInterval(opts.keepAliveMs);
    const conn = b.build();
    if (opts.serverTimeoutMs) conn.serverTimeoutInMilliseconds = opts.serverTimeoutMs;
    if (opts.keepAliveMs) conn.keepAliveIntervalInMilliseconds = opts.keepAliveMs;

    const methods = opts.methods ?? ["ReceiveMessage", "Heartbeat", "AuthRequestResponseRecieved"];
    const inbox = {};
    for (const m of methods) {
      inbox[m] = new Inbox(`${this.client.name} ${label} ${m}`);
      conn.on(m, (...args) => inbox[m].push(args.length === 1 ? args[0] : args));
    }
    const events = { closed: new Inbox(`${label} onclose`), reconnecting: new Inbox(`${label} onreconnecting`), reconnected: new Inbox(`${label} onreconnected`) };
    conn.onclose((e) => events.closed.push(e ?? null));
    conn.onreconnecting((e) => events.reconnecting.push(e ?? null));
    conn.onreconnected((id) => events.reconnected.push(id ?? null));

    const h = { conn, logger, protocol, inbox, events, label, url };
    h.start = (ms = 10_000) => withTimeout(conn.start(), ms, `${label}: start()`);
    h.received = (ms, what) => inbox.ReceiveMessage.next(ms, what ?? "ReceiveMessage");
    h.frames = (type) => protocol.frames.filter((f) => type === undefined || f.type === type);
    this._conns.push(h);
    return h;
  }

  /** Stop every connection made during the current test. */
  async cleanup() {
    const conns = this._conns.splice(0);
    await Promise.allSettled(conns.map((h) => withTimeout(h.conn.stop(), 5_000, `${h.label}: stop()`)));
    for (const f of this._cleanups?.splice(0) ?? []) {
      try {
        await f();
      } catch {
        /* best effort */
      }
    }
    this._lastConns = conns;
  }

  onCleanup(f) {
    (this._cleanups ??= []).push(f);
  }

  diagnostics(conns = this._lastConns ?? this._conns) {
    const parts = [];
    if (this.server) parts.push(`--- server log (last 80 lines, ${this.server.base}) ---\n${this.server.tail(80)}`);
    for (const h of conns) {
      parts.push(`--- client ${this.client.name} ${h.label} log (last 25) ---\n${h.logger.tail(25)}\n    frames: ${preview(h.protocol.frames.map((f) => f.type))}`);
    }
    return parts.join("\n");
  }

  /** Like node:test `it`, but cleans up connections and appends diagnostics on failure. */
  test(name, fn, options = {}) {
    const opts = { timeout: 60_000, ...options };
    it(name, opts, async (t) => {
      let conns;
      try {
        await fn(t);
      } catch (e) {
        conns = this._conns.slice();
        const d = this.diagnostics(conns);
        process.stderr.write(`\n===== diagnostics for failed test "${name}" (${this.client.name}) =====\n${d}\n===== end diagnostics =====\n`);
        throw e;
      } finally {
        await this.cleanup();
      }
    });
  }
}

/** Assert-side helper: a promise that must reject within ms. Returns the rejection. */
export async function expectReject(promise, ms, label) {
  let result;
  try {
    result = await withTimeout(promise, ms, label);
  } catch (e) {
    if (/^timed out after/.test(e.message)) throw new Error(`${label}: neither resolved nor rejected within ${ms} ms`);
    return e;
  }
  throw new Error(`${label}: expected rejection, but it resolved (${preview(result)})`);
}
