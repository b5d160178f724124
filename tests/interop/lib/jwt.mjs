// HS256 JWT minting with node:crypto only.
import { createHmac, randomUUID } from "node:crypto";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

export function signJwt(secret, claims, { header = {}, alg = "HS256", signature } = {}) {
  const h = { alg, typ: "JWT", ...header };
  const input = `${b64url(JSON.stringify(h))}.${b64url(JSON.stringify(claims))}`;
  if (signature !== undefined) return `${input}.${signature}`;
  if (alg === "none") return `${input}.`;
  const sig = createHmac("sha256", secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

/** Claims as Bitwarden's identity server issues them for a user access token. */
export function userClaims({
  sub = randomUUID(),
  device = randomUUID(),
  devicetype = "ChromeBrowser",
  orgowner,
  orgadmin,
  orguser,
  orgcustom,
  expiresIn = 3600,
  notBefore = -60,
  extra = {},
} = {}) {
  const now = Math.floor(Date.now() / 1000);
  const c = {
    sub,
    amr: ["Application"],
    scope: ["api", "offline_access"],
    device,
    devicetype,
    iat: now + Math.min(notBefore, 0),
    nbf: now + notBefore,
    exp: now + expiresIn,
    iss: "http://localhost|login.bitwarden.test",
  };
  if (orgowner !== undefined) c.orgowner = orgowner;
  if (orgadmin !== undefined) c.orgadmin = orgadmin;
  if (orguser !== undefined) c.orguser = orguser;
  if (orgcustom !== undefined) c.orgcustom = orgcustom;
  return { ...c, ...extra };
}

export function userToken(secret, opts = {}) {
  return signJwt(secret, userClaims(opts));
}
