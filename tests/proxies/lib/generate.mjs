// Writes every proxy instance's configuration (the four README examples and the broken
// variants) under OUT, each on its own spare loopback port, plus:
//   OUT/manifest.json   what the Node tests read: name, kind, expected verdict, base URL
//   OUT/instances.tsv   what run.sh starts: name, kind, port, directory, config file
//
//   node generate.mjs --readme README.md --out DIR --upstream 127.0.0.1:PORT --tls DIR
// The --tls DIR holds cert.pem (full chain), key.pem and cert+key.pem (HAProxy's form) for 127.0.0.1.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";
import { KINDS, VARIANTS, readReadme, siteConfig, wrapConfig } from "./configs.mjs";

const CONFIG_FILE = { nginx: "nginx.conf", caddy: "Caddyfile", apache: "httpd.conf", haproxy: "haproxy.cfg" };

/** `n` distinct free loopback ports: all are held open until every one is chosen. */
async function sparePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise((res, rej) => {
        s.once("error", rej);
        s.listen(0, "127.0.0.1", res);
      });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((res) => s.close(() => res()))));
  }
}

const { values: args } = parseArgs({
  options: { readme: { type: "string" }, out: { type: "string" }, upstream: { type: "string" }, tls: { type: "string" } },
});
for (const k of ["readme", "out", "upstream", "tls"]) if (!args[k]) throw new Error(`--${k} is required`);

const readme = readReadme(args.readme);
const tls = { cert: path.join(args.tls, "cert.pem"), key: path.join(args.tls, "key.pem"), pem: path.join(args.tls, "cert+key.pem") };
const instances = [
  ...KINDS.map((kind) => ({ name: kind, kind, expect: "ok", edit: (c) => c })),
  ...VARIANTS,
];
const ports = await sparePorts(instances.length);
const manifest = [];
const tsv = [];
for (const [i, inst] of instances.entries()) {
  const port = ports[i];
  const dir = path.join(args.out, inst.name);
  // nginx's workers (nobody when started as root) write its temp files here.
  for (const sub of ["tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"]) {
    mkdirSync(path.join(dir, sub), { recursive: true });
    chmodSync(path.join(dir, sub), 0o1777);
  }
  chmodSync(dir, 0o755);
  chmodSync(path.join(dir, "tmp"), 0o755);
  const site = inst.edit(siteConfig(inst.kind, readme, { port, upstream: args.upstream, tls }));
  const config = path.join(dir, CONFIG_FILE[inst.kind]);
  writeFileSync(config, wrapConfig(inst.kind, site, { dir, port }));
  manifest.push({ name: inst.name, kind: inst.kind, expect: inst.expect, port, base: `https://127.0.0.1:${port}`, dir, config });
  tsv.push([inst.name, inst.kind, port, dir, config].join("\t"));
}
writeFileSync(path.join(args.out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
writeFileSync(path.join(args.out, "instances.tsv"), `${tsv.join("\n")}\n`);
