// Proxy configurations taken from README.md, so the README's examples and what is tested cannot
// drift apart. Each example is the one fenced block with its language tag (```nginx,
// ```caddyfile, ```apache, ```haproxy) in the section "## Behind a reverse proxy"; the harness
// changes it only by the mechanical substitutions listed in tests/proxies/README.md, each of
// which must match exactly as often as expected or generation fails (a README edit that
// breaks a substitution is caught, never papered over).
import { readFileSync } from "node:fs";

export const SECTION = "## Behind a reverse proxy";
export const KINDS = ["nginx", "caddy", "apache", "haproxy"];
const LANG = { nginx: "nginx", caddy: "caddyfile", apache: "apache", haproxy: "haproxy" };
/** How often each example names pushwarden's address (Apache: ProxyPass and ProxyPassReverse). */
const UPSTREAM_COUNT = { nginx: 1, caddy: 1, apache: 2, haproxy: 1 };

/** The README's address of pushwarden, replaced by the harness's server. */
export const README_UPSTREAM = "127.0.0.1:5000";

/** The fenced block tagged `lang` in the reverse-proxy section; exactly one must exist. */
export function extractBlock(readme, lang) {
  const start = readme.indexOf(`\n${SECTION}\n`);
  if (start < 0) throw new Error(`README.md has no "${SECTION}" section`);
  const rest = readme.slice(start + SECTION.length + 2);
  const next = rest.search(/^## /m);
  const section = next < 0 ? rest : rest.slice(0, next);
  const blocks = [...section.matchAll(/^```([A-Za-z0-9_-]*)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === lang);
  if (blocks.length !== 1) throw new Error(`README.md "${SECTION}": expected one \`\`\`${lang} block, found ${blocks.length}`);
  return blocks[0][2];
}

/**
 * Replace `from` (string or RegExp with the g flag) by `to`, requiring exactly `count` matches.
 * `what` names the substitution in the error.
 */
export function substitute(text, from, to, what, count = 1) {
  const re = typeof from === "string" ? new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "g") : from;
  const found = (text.match(re) ?? []).length;
  if (found !== count) throw new Error(`substitution "${what}": expected ${count} match(es) of ${re}, found ${found}`);
  return text.replace(re, to);
}

/**
 * The README block for `kind`, made runnable on `port` in front of `upstream`:
 * - the public listener (443) becomes 127.0.0.1:<port>, with the harness's certificate
 *   (`tls`: cert = full chain, key, pem = both, HAProxy's form) for the README's;
 * - `127.0.0.1:5000` becomes the harness's pushwarden.
 * Nothing else changes. TLS is not optional: nginx's buffering is only visible through it (on
 * plain HTTP, nginx writes each upstream read out at once even with `proxy_buffering on`).
 */
export function siteConfig(kind, readme, { port, upstream, tls }) {
  if (!tls?.cert || !tls?.key || !tls?.pem) throw new Error("siteConfig: tls {cert, key, pem} is required");
  let c = extractBlock(readme, LANG[kind]);
  const addr = `127.0.0.1:${port}`;
  c = substitute(c, README_UPSTREAM, upstream, "pushwarden's address", UPSTREAM_COUNT[kind]);
  const certs = (text, what) =>
    substitute(substitute(text, "/etc/ssl/vault.example.com/fullchain.pem", tls.cert, `${what} certificate`), "/etc/ssl/vault.example.com/privkey.pem", tls.key, `${what} key`);
  switch (kind) {
    case "nginx":
      return certs(substitute(c, "listen 443 ssl;", `listen ${addr} ssl;`, "nginx listen"), "nginx");
    case "caddy":
      // Caddy obtains certificates itself for a host name; here it is given the harness's.
      return substitute(c, /^vault\.example\.com \{\n/gm, `${addr} {\n    tls ${tls.cert} ${tls.key}\n`, "Caddy site address");
    case "apache":
      return certs(substitute(c, "<VirtualHost *:443>", `<VirtualHost ${addr}>`, "Apache VirtualHost"), "Apache");
    case "haproxy":
      return substitute(c, /^(\s*)bind :443 ssl crt \S+$/gm, `$1bind ${addr} ssl crt ${tls.pem}`, "HAProxy bind");
    default:
      throw new Error(`unknown proxy kind ${kind}`);
  }
}

/**
 * Deliberately broken variants: each is the README configuration with one documented edit,
 * and `expect` names the failure the official client and `pushwarden doctor` must see.
 */
export const VARIANTS = [
  {
    name: "nginx-no-upgrade",
    kind: "nginx",
    expect: "no-upgrade",
    edit: (c) => substitute(c, /^\s*proxy_set_header (Upgrade|Connection) .*\n/gm, "", "drop the Upgrade/Connection headers", 2),
  },
  {
    // The usual mistake: a location for the authenticated hub only.
    name: "nginx-no-anonymous",
    kind: "nginx",
    expect: "no-anonymous",
    edit: (c) => substitute(c, "location /notifications/ {", "location /notifications/hub {", "route /notifications/hub only"),
  },
  {
    // pushwarden sends `X-Accel-Buffering: no`, which nginx obeys; a proxy that buffers anyway
    // is nginx told to ignore that header.
    name: "nginx-buffering",
    kind: "nginx",
    expect: "buffering",
    edit: (c) => substitute(c, /proxy_buffering off;/g, "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;", "buffering on"),
  },
  {
    name: "nginx-timeout-30s",
    kind: "nginx",
    expect: "read-timeout",
    edit: (c) => substitute(c, /proxy_read_timeout 1h;/g, "proxy_read_timeout 30s;", "30 s read timeout"),
  },
  {
    // Apache's usual mistake: ProxyPass without upgrade=websocket (and no mod_proxy_wstunnel).
    name: "apache-no-upgrade",
    kind: "apache",
    expect: "no-upgrade",
    edit: (c) => substitute(c, / upgrade=websocket/g, "", "drop upgrade=websocket"),
  },
  {
    name: "haproxy-timeout-30s",
    kind: "haproxy",
    expect: "read-timeout",
    edit: (c) => substitute(c, /timeout server 2m/g, "timeout server 30s", "30 s server timeout"),
  },
];

/** The whole file a proxy runs with: the harness's own process settings around the README block. */
export function wrapConfig(kind, site, { dir, port }) {
  switch (kind) {
    case "nginx":
      // Own pid, logs and temp paths under `dir`; never /etc/nginx or /var/lib/nginx.
      return `# generated by tests/proxies from README.md; do not edit
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/tmp/body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;

# ---- README.md block ----
${site}
# ---- end README.md block ----
}
`;
    case "caddy":
      // No admin endpoint (several Caddys run at once) and no HTTP->HTTPS redirect listener
      // (it would take port 80).
      return `# generated by tests/proxies from README.md; do not edit
{
    admin off
    auto_https disable_redirects
}

${site}`;
    case "apache": {
      const mods = ["mpm_event", "authz_core", "proxy", "proxy_http", "headers", "socache_shmcb", "ssl"];
      const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
      return `# generated by tests/proxies from README.md; do not edit
ServerRoot ${dir}
Listen 127.0.0.1:${port}
PidFile ${dir}/httpd.pid
DefaultRuntimeDir ${dir}
Mutex file:${dir} default
ErrorLog ${dir}/error.log
LogLevel warn
ServerName 127.0.0.1
${mods.map((m) => `LoadModule ${m}_module /usr/lib/apache2/modules/mod_${m}.so`).join("\n")}
${asRoot ? "User www-data\nGroup www-data\n" : ""}SSLSessionCache shmcb:${dir}/ssl_scache(512000)
# ---- README.md block ----
${site}
# ---- end README.md block ----
`;
    }
    case "haproxy":
      return `# generated by tests/proxies from README.md; do not edit
# ---- README.md block ----
${site}# ---- end README.md block ----
`;
    default:
      throw new Error(`unknown proxy kind ${kind}`);
  }
}

export function readReadme(file) {
  return readFileSync(file, "utf8");
}
