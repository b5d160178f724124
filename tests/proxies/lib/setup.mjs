// What run.sh hands the Node tests (env), the proxy instances, and a per-test harness built on
// tests/interop's (the same pinned official client, connection builder and diagnostics).
import { it } from "node:test";
import { readFileSync } from "node:fs";
import { loadClient } from "../../interop/lib/env.mjs";
import { Harness } from "../../interop/lib/harness.mjs";
import { postSend } from "../../interop/lib/server.mjs";

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run tests/proxies/run.sh`);
  return v;
}

export const ENV = {
  manifest: need("PROXIES_MANIFEST"),
  server: need("PROXIES_SERVER"),
  jwtSecret: need("PROXIES_JWT_SECRET"),
  sendKey: need("PROXIES_SEND_KEY"),
  longPollMs: Number(need("PROXIES_LONG_POLL_TIMEOUT_MS")),
  doctorIdle: need("PROXIES_DOCTOR_IDLE"),
  client: process.env.PROXIES_CLIENT || "v8",
  caFile: process.env.PROXIES_CA_FILE || null,
  serverLog: process.env.PROXIES_SERVER_LOG || null,
};

/** [{name, kind, expect, port, base, dir, config}] as generate.mjs wrote them. */
export const INSTANCES = JSON.parse(readFileSync(ENV.manifest, "utf8"));

export const client = loadClient(ENV.client);

function serverTail(n) {
  if (!ENV.serverLog) return "(no server log)";
  try {
    return readFileSync(ENV.serverLog, "utf8").split("\n").slice(-n).join("\n");
  } catch (e) {
    return `(server log unreadable: ${e.message})`;
  }
}

function proxyTail(inst, n) {
  const parts = [];
  for (const f of ["error.log", "stderr.log"]) {
    try {
      parts.push(`${f}:\n${readFileSync(`${inst.dir}/${f}`, "utf8").split("\n").slice(-n).join("\n")}`);
    } catch {
      /* not every proxy writes both */
    }
  }
  return parts.join("\n");
}

/**
 * node:test `it` with a fresh interop Harness pointed at `inst` (connections through the
 * proxy; tokens signed with the server's secret); connections are stopped after the test and
 * the client, proxy and server logs are printed when it fails. Tests run concurrently, so each
 * has its own harness.
 */
export function proxyTest(inst, name, fn, options = {}) {
  it(`${inst.name}: ${name}`, { timeout: 60_000, ...options }, async (t) => {
    const h = new Harness(client);
    h.server = { base: inst.base, jwtSecret: ENV.jwtSecret, sendKey: ENV.sendKey, tail: serverTail };
    try {
      await fn(h, t);
    } catch (e) {
      process.stderr.write(
        `\n===== diagnostics for "${inst.name}: ${name}" =====\n${h.diagnostics(h._conns)}\n--- proxy ${inst.name} logs ---\n${proxyTail(inst, 20)}\n===== end =====\n`,
      );
      throw e;
    } finally {
      await h.cleanup();
    }
  });
}

/**
 * POST a notification to /notifications/send through the proxy (`via` = instance) or straight
 * to pushwarden (`via` = null, as a vault server on the same host would); returns `delivered`.
 */
export async function sendVia(via, body) {
  const server = { base: via ? `${via.base}/notifications` : ENV.server, sendKey: ENV.sendKey };
  const r = await postSend(server, body);
  if (r.status !== 200 || typeof r.json?.delivered !== "number") {
    throw new Error(`POST ${server.base}/send -> expected 200 {"delivered":N}, got ${r.status} ${r.text.slice(0, 300)}`);
  }
  return r.json.delivered;
}

/** Resolve when `pred()` holds, polling every 100 ms; reject with `what` after `ms`. */
export async function waitFor(pred, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
