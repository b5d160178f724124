// Start/stop a pushwarden server process per the interop contract.
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, access } from "node:fs/promises";
import { constants as fsConstants } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { SERVER_BIN } from "./env.mjs";

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
const READY = /listening on http:\/\/([0-9.]+|\[[0-9a-f:]+\]|localhost):(\d+)/;
const MAX_LOG_LINES = 5000;

/** Durations used by most suites; individual files override. */
export const DEFAULT_TIMING = {
  PUSHWARDEN_HEARTBEAT_INTERVAL: "120s",
};

export async function startServer({ env: extra = {}, readyTimeoutMs = 10_000, label = "pushwarden" } = {}) {
  try {
    await access(SERVER_BIN, fsConstants.X_OK);
  } catch {
    throw new Error(`server binary not found or not executable: ${SERVER_BIN} (set PUSHWARDEN_BIN)`);
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), "pushwarden-interop-"));
  const jwtSecret = randomBytes(32).toString("base64url");
  const sendKey = randomBytes(24).toString("base64url");
  const installationId = randomUUID();
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("PUSHWARDEN_") && k !== "RUST_LOG") env[k] = v;
  }
  Object.assign(env, {
    PUSHWARDEN_LISTEN: "127.0.0.1:0",
    PUSHWARDEN_DATA_DIR: dataDir,
    PUSHWARDEN_JWT_HS256_SECRET: jwtSecret,
    PUSHWARDEN_SEND_API_KEY: sendKey,
    PUSHWARDEN_INSTALLATION_ID: installationId,
    RUST_LOG: process.env.INTEROP_RUST_LOG || "info",
    NO_COLOR: "1",
    ...DEFAULT_TIMING,
    ...extra,
  });

  const proc = spawn(SERVER_BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const logs = [];
  const t0 = Date.now();
  const push = (stream, line) => {
    logs.push(`[${((Date.now() - t0) / 1000).toFixed(3)}s ${stream}] ${line.replace(ANSI, "")}`);
    if (logs.length > MAX_LOG_LINES) logs.splice(0, logs.length - MAX_LOG_LINES);
    if (process.env.INTEROP_SERVER_LOG) process.stderr.write(`[${label}] ${stream}: ${line}\n`);
  };
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on("exit", (code, signal) => {
      exitInfo = { code, signal, at: Date.now() };
      push("exit", `process exited code=${code} signal=${signal}`);
      resolve(exitInfo);
    });
  });
  let spawnError = null;
  proc.on("error", (e) => {
    spawnError = e;
    push("spawn", `error: ${e.message}`);
  });

  const ready = new Promise((resolve, reject) => {
    let found = false;
    const onLine = (stream) => {
      let buf = "";
      return (chunk) => {
        buf += chunk.toString("utf8");
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, "");
          buf = buf.slice(i + 1);
          push(stream, line);
          const m = !found && stream === "stdout" && line.replace(ANSI, "").match(READY);
          if (m) {
            found = true;
            resolve({ host: m[1], port: Number(m[2]) });
          }
        }
      };
    };
    proc.stdout.on("data", onLine("stdout"));
    proc.stderr.on("data", onLine("stderr"));
    exited.then((e) => reject(new Error(`server exited before it was ready (code=${e.code} signal=${e.signal})`)));
    setTimeout(() => reject(new Error(`server did not print 'listening on http://127.0.0.1:PORT' on stdout within ${readyTimeoutMs} ms`)), readyTimeoutMs).unref();
  });

  let addr;
  try {
    addr = await ready;
  } catch (e) {
    proc.kill("SIGKILL");
    await rm(dataDir, { recursive: true, force: true });
    e.message += `\n--- server output ---\n${logs.join("\n")}${spawnError ? `\nspawn error: ${spawnError.message}` : ""}`;
    throw e;
  }

  const base = `http://127.0.0.1:${addr.port}`;
  let stopped = false;
  const server = {
    base,
    port: addr.port,
    wsBase: `ws://127.0.0.1:${addr.port}`,
    jwtSecret,
    sendKey,
    installationId,
    dataDir,
    proc,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    logs,
    tail(n = 80) {
      return logs.slice(-n).join("\n");
    },
    /** SIGTERM, wait up to timeoutMs, then SIGKILL. Resolves to {code, signal, timedOut, ms}. */
    async stop({ signal = "SIGTERM", timeoutMs = 10_000 } = {}) {
      if (stopped) return exitInfo ? { ...exitInfo, timedOut: false } : await exited;
      stopped = true;
      const t = Date.now();
      let timedOut = false;
      if (!exitInfo) {
        proc.kill(signal);
        let timer;
        const r = await Promise.race([
          exited,
          new Promise((res) => (timer = setTimeout(() => res(null), timeoutMs))),
        ]);
        clearTimeout(timer);
        if (!r) {
          timedOut = true;
          push("harness", `server did not exit ${timeoutMs} ms after ${signal}; sending SIGKILL`);
          proc.kill("SIGKILL");
          await exited;
        }
      }
      await rm(dataDir, { recursive: true, force: true });
      return { ...exitInfo, timedOut, ms: exitInfo.at - t };
    },
  };
  return server;
}

/** POST /send with the configured API key (or `key`), JSON body (object or raw string). */
export async function postSend(server, body, { key = server.sendKey, headers = {}, authorization } = {}) {
  const h = { "content-type": "application/json", accept: "application/json", ...headers };
  const auth = authorization !== undefined ? authorization : key === null ? null : `Bearer ${key}`;
  if (auth !== null) h.authorization = auth;
  const res = await fetch(`${server.base}/send`, {
    method: "POST",
    headers: h,
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

/** POST /send and require HTTP 200 with a numeric `delivered`. */
export async function send(server, body, opts) {
  const r = await postSend(server, body, opts);
  if (r.status !== 200 || typeof r.json?.delivered !== "number") {
    throw new Error(`POST /send ${JSON.stringify(body)} -> expected 200 {"delivered":N}, got ${r.status} ${r.text}`);
  }
  return r.json.delivered;
}
