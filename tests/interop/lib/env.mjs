// Paths, client-version selection and loading of the pinned @microsoft/signalr builds.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const INTEROP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = path.resolve(INTEROP_DIR, "..", "..");
export const SERVER_BIN = process.env.PUSHWARDEN_BIN || path.join(REPO_ROOT, "target", "debug", "pushwarden");

export const ALL_VERSIONS = ["v8", "v10"];

/** Client versions to test: env INTEROP_CLIENTS="v8,v10" (default both). */
export function clientVersions() {
  const raw = process.env.INTEROP_CLIENTS;
  if (!raw) return ALL_VERSIONS;
  const list = raw.split(",").map((s) => s.trim()).filter(Boolean);
  for (const v of list) {
    if (!ALL_VERSIONS.includes(v)) throw new Error(`INTEROP_CLIENTS: unknown client version '${v}' (known: ${ALL_VERSIONS})`);
  }
  return list;
}

const cache = new Map();

/**
 * Load the CommonJS build of the pinned client from tests/interop/<v>/node_modules.
 * The CJS build is required on purpose: only it `require`s `ws` / `eventsource` in Node
 * (the ESM build has no `require`, so it would find no WebSocket in Node 20).
 */
export function loadClient(v) {
  if (cache.has(v)) return cache.get(v);
  const pkgDir = path.join(INTEROP_DIR, v);
  const req = createRequire(path.join(pkgDir, "package.json"));
  const declared = req("./package.json").dependencies;
  const signalR = req("@microsoft/signalr");
  const msgpack = req("@microsoft/signalr-protocol-msgpack");
  const installed = req("@microsoft/signalr/package.json").version;
  const installedMsgpack = req("@microsoft/signalr-protocol-msgpack/package.json").version;
  // ws / eventsource exactly as the client resolves them.
  const fromSignalR = createRequire(req.resolve("@microsoft/signalr"));
  const WebSocket = fromSignalR("ws");
  const EventSource = fromSignalR("eventsource");
  // the msgpack package must use the very same signalr module instance
  const msgpackReq = createRequire(req.resolve("@microsoft/signalr-protocol-msgpack"));
  const signalRSeenByMsgpack = msgpackReq.resolve("@microsoft/signalr");
  const client = {
    name: v,
    signalR,
    MessagePackHubProtocol: msgpack.MessagePackHubProtocol,
    WebSocket,
    EventSource,
    declared: {
      signalr: declared["@microsoft/signalr"],
      msgpack: declared["@microsoft/signalr-protocol-msgpack"],
    },
    installed: { signalr: installed, msgpack: installedMsgpack },
    sameSignalRInstance: signalRSeenByMsgpack === req.resolve("@microsoft/signalr"),
    hasStatefulReconnect: typeof signalR.HubConnectionBuilder.prototype.withStatefulReconnect === "function",
  };
  cache.set(v, client);
  return client;
}
