"""Bearer tokens: verification of HS256 JWTs (a shared secret) and RS256/ES256 JWTs (a JWKS file).

Role: turn the compact JWT of an ``Authorization: Bearer`` header into its
verified claims, or refuse it with a reason. Only ``HS256`` is accepted (the
header's ``alg`` is checked, so ``none`` and algorithm swaps fail); the
signature is compared in constant time; ``exp`` is required and must lie in
the future, ``nbf`` (when present) in the past; ``iss`` must equal the
configured issuer and ``aud`` (a string or a list) must contain the
configured audience, each when one is configured; ``sub`` must be a
non-empty string. Input: the token text, the secret and those settings.
Output: ``Claims`` (subject and roles) or ``TokenError``. Caller:
``llmops.api.auth`` (the principal dependency). The HS256 path needs no
third-party JWT library.

With a JWKS file configured (``settings.api.jwks_file``), tokens whose
header ``alg`` is ``RS256`` or ``ES256`` are verified with PyJWT against the
key whose ``kid`` the header names (``JwksFile``: read once, read again when
the file's mtime or size changes; a file that cannot be read or parsed
refuses every such token). The header's ``alg`` must be one of those two
AND the algorithm of that key (an RSA key signs RS256 only, a P-256 key
ES256 only); symmetric (``oct``) and encryption (``use: enc``) keys in the
file are ignored, so an HS256 token is never checked against a JWKS key
(only ever against ``jwt_secret``) and ``none`` is never accepted. The
claim checks are those of HS256: ``exp`` required, ``nbf``, ``iss`` and
``aud`` when configured, a non-empty ``sub``. ``verify_bearer`` picks the
path from the header. The optional ``teams`` claim (a list of strings, or a
comma-separated string) gives the teams the caller belongs to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from llmops.engine.errors import LlmopsError

MAX_TOKEN_BYTES = 8192
ALGORITHM = "HS256"
JWKS_ALGORITHMS = ("RS256", "ES256")
MAX_JWKS_BYTES = 1024 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")


class TokenError(LlmopsError):
    """A bearer token that is malformed, badly signed, expired or meant for someone else."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What the API uses of a verified token."""

    subject: str
    roles: tuple[str, ...]
    teams: tuple[str, ...] = ()


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


def _names(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise TokenError(f"token claim {claim} is not a list of strings")
    return tuple(r.strip() for r in value if r.strip())


def _roles(claims: dict[str, Any]) -> tuple[str, ...]:
    return _names(claims, "roles")


def _claims(claims: dict[str, Any]) -> Claims:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise TokenError("token has no subject (sub)")
    return Claims(subject=subject.strip(), roles=_roles(claims),
                  teams=_names(claims, "teams"))


def _compact(token: str) -> tuple[list[str], dict[str, Any]]:
    """The three parts of a compact JWT and its decoded header; ``TokenError`` otherwise."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token is not a compact JWT")
    return parts, _json(parts[0], "header")


def verify(token: str, secret: str, *, issuer: str = "", audience: str = "",
           clock: Callable[[], float] = time.time) -> Claims:
    """The claims of ``token`` once every check passed; ``TokenError`` otherwise."""
    if not secret:
        raise TokenError("bearer tokens are not accepted by this server")
    parts, header = _compact(token)
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
    return _claims(claims)


# --------------------------------------------------------------------------- JWKS


class JwksFile:
    """The signing keys of a JWKS file, read again whenever the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}

    def _load(self) -> dict[str, jwt.PyJWK]:
        with open(self.path, "rb") as handle:
            raw = handle.read(MAX_JWKS_BYTES + 1)
        if len(raw) > MAX_JWKS_BYTES:
            raise TokenError("the JWKS file is too large")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TokenError("the JWKS file is not JSON") from err
        found = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(found, list):
            raise TokenError("the JWKS file has no keys list")
        usable = [k for k in found if isinstance(k, dict)
                  and k.get("kty") in ("RSA", "EC") and k.get("use", "sig") == "sig"
                  and isinstance(k.get("kid"), str) and k.get("kid")]
        if not usable:
            return {}
        try:
            keyset = jwt.PyJWKSet(usable)
        except jwt.PyJWTError as err:
            raise TokenError("the JWKS file has no usable signing keys") from err
        return {str(key.key_id): key for key in keyset.keys
                if key.algorithm_name in JWKS_ALGORITHMS}

    def key(self, kid: str) -> jwt.PyJWK:
        """The key named ``kid``; ``TokenError`` when there is none or the file is unusable."""
        try:
            info = os.stat(self.path)
        except OSError as err:
            raise TokenError("the JWKS file cannot be read") from err
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._keys = self._load()
                except OSError as err:
                    raise TokenError("the JWKS file cannot be read") from err
                self._stamp = stamp
            found = self._keys.get(kid)
        if found is None:
            raise TokenError("token key id (kid) is not in the JWKS")
        return found


_JWKS_FILES: dict[str, JwksFile] = {}
_JWKS_LOCK = threading.Lock()


def jwks_file(path: str) -> JwksFile:
    """The shared, cached ``JwksFile`` of ``path``."""
    with _JWKS_LOCK:
        found = _JWKS_FILES.get(path)
        if found is None:
            found = _JWKS_FILES[path] = JwksFile(path)
        return found


def verify_jwks(token: str, keys: JwksFile, *, issuer: str = "",
                audience: str = "") -> Claims:
    """The claims of an RS256/ES256 ``token`` signed by a key of ``keys``."""
    header = _compact(token)[1]
    alg = header.get("alg")
    if alg not in JWKS_ALGORITHMS:
        raise TokenError(f"token algorithm must be one of {', '.join(JWKS_ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token has no key id (kid)")
    key = keys.key(kid)
    if key.algorithm_name != alg:
        raise TokenError("token algorithm does not match its key")
    try:
        claims = jwt.decode(
            token, key=key.key, algorithms=[alg], issuer=issuer or None,
            audience=audience or None,
            options={"require": ["exp"], "verify_aud": bool(audience),
                     "verify_iss": bool(issuer)})
    except jwt.ExpiredSignatureError as err:
        raise TokenError("token has expired") from err
    except jwt.ImmatureSignatureError as err:
        raise TokenError("token is not valid yet") from err
    except jwt.MissingRequiredClaimError as err:
        raise TokenError(f"token has no {err.claim}") from err
    except jwt.InvalidIssuerError as err:
        raise TokenError("token issuer is not accepted") from err
    except jwt.InvalidAudienceError as err:
        raise TokenError("token audience is not this server") from err
    except jwt.InvalidSignatureError as err:
        raise TokenError("token signature is invalid") from err
    except jwt.PyJWTError as err:
        raise TokenError(f"token is invalid: {type(err).__name__}") from err
    if not isinstance(claims, dict):
        raise TokenError("token payload is not a JSON object")
    if _number(claims, "exp") is None:
        raise TokenError("token has no expiry (exp)")
    return _claims(claims)


def verify_bearer(token: str, secret: str, *, jwks: JwksFile | None = None,
                  issuer: str = "", audience: str = "") -> Claims:
    """HS256 with ``secret``, or RS256/ES256 with ``jwks`` (when set), by the header's alg."""
    if jwks is not None:
        parts = token.split(".")
        if len(token) <= MAX_TOKEN_BYTES and len(parts) == 3:
            if _json(parts[0], "header").get("alg") in JWKS_ALGORITHMS:
                return verify_jwks(token, jwks, issuer=issuer, audience=audience)
    return verify(token, secret, issuer=issuer, audience=audience)
