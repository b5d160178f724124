// `pushwarden doctor` against each proxy, all at once (each run idles PROXIES_DOCTOR_IDLE):
// no check fails behind the README's configurations, and each broken variant fails the check
// that names its fault, with the fix lines for that proxy.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { SERVER_BIN } from "../interop/lib/env.mjs";
import { userToken } from "../interop/lib/jwt.mjs";
import { ENV, INSTANCES } from "./lib/setup.mjs";

/** Every check doctor reports for an https:// URL, in its order (docs: doctor's CLI contract). */
const CHECK_IDS = [
  "scheme",
  "tls.chain",
  "tls.name",
  "tls.expiry",
  "tls.redirect",
  "websocket.anonymous_hub",
  "websocket.hub",
  "negotiate",
  "sse",
  "long_polling",
  "idle.websocket",
  "idle.long_polling",
  "exposure.send",
  "exposure.push",
  "clock",
];
const PASS_ALWAYS = ["websocket.anonymous_hub", "websocket.hub", "negotiate", "sse", "long_polling", "idle.websocket", "idle.long_polling", "exposure.send"];

/**
 * For each broken kind: the check that must fail, its `problem`, a fix line (substring) per
 * proxy where doctor's contract names one, and checks that must still pass (the verdict is
 * about this fault, not everything at once).
 */
const BROKEN = {
  "no-upgrade": {
    fails: ["websocket.anonymous_hub", "websocket.hub"],
    problem: "upgrade_headers",
    fix: { nginx: "proxy_set_header Upgrade $http_upgrade;", apache: "upgrade=websocket" },
    passes: ["negotiate", "sse", "long_polling", "exposure.send"],
  },
  "no-anonymous": {
    fails: ["websocket.anonymous_hub"],
    problem: "route_anonymous_hub",
    fix: { nginx: "location /notifications/" },
    passes: ["websocket.hub"],
  },
  buffering: {
    fails: ["sse"],
    problem: "buffering",
    fix: { nginx: "proxy_buffering off;" },
    passes: ["websocket.anonymous_hub", "websocket.hub", "negotiate", "long_polling", "idle.websocket", "idle.long_polling", "exposure.send"],
  },
  "read-timeout": {
    fails: ["idle.long_polling"],
    problem: "read_timeout",
    fix: { nginx: "proxy_read_timeout", haproxy: "timeout server" },
    passes: ["websocket.anonymous_hub", "websocket.hub", "negotiate", "sse", "long_polling", "idle.websocket", "exposure.send"],
  },
};

/** Run doctor with --json; resolve {code, json, stdout, stderr}. */
function doctor(inst) {
  const args = [
    "doctor",
    inst.base,
    "--json",
    "--idle",
    ENV.doctorIdle,
    "--token",
    userToken(ENV.jwtSecret),
    ...(ENV.caFile ? ["--ca-file", ENV.caFile] : []),
  ];
  return new Promise((resolve, reject) => {
    const p = spawn(SERVER_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("close", (code) => {
      let json;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, json, stdout, stderr, args: args.map((a, i) => (args[i - 1] === "--token" ? "<jwt>" : a)) });
    });
  });
}

const report = (r) => `doctor ${r.args.join(" ")} -> exit ${r.code}\n${r.stdout}\n${r.stderr}`;
const verdicts = (r) => Object.fromEntries(r.json.checks.map((c) => [c.id, c.verdict]));

describe("pushwarden doctor through each proxy", { concurrency: true }, () => {
  for (const inst of INSTANCES) {
    if (inst.expect === "ok") {
      it(`${inst.name}: every check passes or warns, exit 0`, { timeout: 150_000 }, async () => {
        const r = await doctor(inst);
        assert.ok(r.json, `no JSON on stdout: ${report(r)}`);
        const v = verdicts(r);
        assert.deepEqual(r.json.checks.map((c) => c.id), CHECK_IDS, report(r));
        assert.deepEqual(
          r.json.checks.filter((c) => c.verdict === "fail").map((c) => `${c.id}: ${c.detail}`),
          [],
          report(r),
        );
        assert.equal(r.code, 0, report(r));
        for (const id of PASS_ALWAYS) assert.equal(v[id], "pass", `${id} should pass: ${report(r)}`);
        for (const id of ["scheme", "tls.chain", "tls.name", "tls.expiry"]) assert.equal(v[id], "pass", `${id}: ${report(r)}`);
        // named from its Server header or its own error page (HAProxy: for the unrouted /push/)
        assert.equal(r.json.proxy, inst.kind, `proxy recognised: ${report(r)}`);
      });
    } else {
      const want = BROKEN[inst.expect];
      assert.ok(want, `no expectation for ${inst.expect}`);
      it(`${inst.name}: ${want.fails.join(", ")} fail with problem ${want.problem}, exit 1`, { timeout: 150_000 }, async () => {
        const r = await doctor(inst);
        assert.ok(r.json, `no JSON on stdout: ${report(r)}`);
        assert.equal(r.code, 1, report(r));
        const byId = Object.fromEntries(r.json.checks.map((c) => [c.id, c]));
        for (const id of want.fails) {
          assert.equal(byId[id]?.verdict, "fail", `${id} should fail: ${report(r)}`);
          assert.equal(byId[id].problem, want.problem, `${id} problem: ${report(r)}`);
        }
        for (const id of want.passes) assert.equal(byId[id]?.verdict, "pass", `${id} should pass: ${report(r)}`);
        const line = want.fix[inst.kind];
        if (line) {
          const lines = byId[want.fails[0]].fixes.filter((f) => f.proxy === inst.kind).flatMap((f) => f.lines);
          assert.ok(lines.some((l) => l.includes(line)), `${inst.kind} fix for ${want.fails[0]} should include "${line}": ${report(r)}`);
        }
      });
    }
  }
});
