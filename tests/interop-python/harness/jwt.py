"""HS256 JWT minting with the standard library only."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(secret: str, claims: dict) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


def user_claims(sub: str, orguser: list[str], expires_in: int = 3600, **extra) -> dict:
    now = int(time.time())
    claims = {
        "sub": sub,
        "amr": ["Application"],
        "scope": ["api"],
        "device": str(uuid.uuid4()),
        "devicetype": "ChromeBrowser",
        "orguser": orguser,
        "nbf": now - 60,
        "iat": now - 60,
        "exp": now + expires_in,
    }
    claims.update(extra)
    return claims


def user_token(secret: str, sub: str, orguser: list[str], **kw) -> str:
    return sign(secret, user_claims(sub, orguser, **kw))
