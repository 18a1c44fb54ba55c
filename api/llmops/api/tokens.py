"""Bearer tokens: verification of HS256 JSON Web Tokens with the standard library.

Role: turn the compact JWT of an ``Authorization: Bearer`` header into its
verified claims, or refuse it with a reason. Only ``HS256`` is accepted (the
header's ``alg`` is checked, so ``none`` and algorithm swaps fail); the
signature is compared in constant time; ``exp`` is required and must lie in
the future, ``nbf`` (when present) in the past; ``iss`` must equal the
configured issuer and ``aud`` (a string or a list) must contain the
configured audience, each when one is configured; ``sub`` must be a
non-empty string. Input: the token text, the secret and those settings.
Output: ``Claims`` (subject and roles) or ``TokenError``. Caller:
``llmops.api.auth`` (the principal dependency). No third-party JWT library
is needed for this one algorithm.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmops.engine.errors import LlmopsError

MAX_TOKEN_BYTES = 8192
ALGORITHM = "HS256"
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")


class TokenError(LlmopsError):
    """A bearer token that is malformed, badly signed, expired or meant for someone else."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What the API uses of a verified token."""

    subject: str
    roles: tuple[str, ...]


def _b64decode(segment: str) -> bytes:
    if not _SEGMENT.match(segment):
        raise TokenError("token segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as err:
        raise TokenError("token segment is not base64url") from err


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenError(f"token {what} is not JSON") from err
    if not isinstance(value, dict):
        raise TokenError(f"token {what} is not a JSON object")
    return value


def _signature(secret: bytes, signing_input: str) -> bytes:
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def encode(claims: dict[str, Any], secret: str) -> str:
    """An HS256 token for ``claims`` (for tests and tools; the API only verifies)."""
    header = _b64encode(json.dumps({"alg": ALGORITHM, "typ": "JWT"}).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_b64encode(_signature(secret.encode(), signing_input))}"


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenError(f"token claim {name} is not a number")
    return float(value)


def _roles(claims: dict[str, Any]) -> tuple[str, ...]:
    value = claims.get("roles", [])
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise TokenError("token claim roles is not a list of strings")
    return tuple(r.strip() for r in value if r.strip())


def verify(token: str, secret: str, *, issuer: str = "", audience: str = "",
           clock: Callable[[], float] = time.time) -> Claims:
    """The claims of ``token`` once every check passed; ``TokenError`` otherwise."""
    if not secret:
        raise TokenError("bearer tokens are not accepted by this server")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token is not a compact JWT")
    header = _json(parts[0], "header")
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"token algorithm must be {ALGORITHM}")
    expected = _signature(secret.encode(), f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(expected, _b64decode(parts[2])):
        raise TokenError("token signature is invalid")
    claims = _json(parts[1], "payload")
    now = clock()
    exp = _number(claims, "exp")
    if exp is None:
        raise TokenError("token has no expiry (exp)")
    if now >= exp:
        raise TokenError("token has expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now < nbf:
        raise TokenError("token is not valid yet")
    if issuer and claims.get("iss") != issuer:
        raise TokenError("token issuer is not accepted")
    if audience:
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise TokenError("token audience is not this server")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise TokenError("token has no subject (sub)")
    return Claims(subject=subject.strip(), roles=_roles(claims))
