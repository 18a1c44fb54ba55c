"""Bearer tokens: HS256 JWTs (a shared secret) and RS256/ES256 JWTs (a JWKS file), all
verified by PyJWT.

Role: turn the compact JWT of an ``Authorization: Bearer`` header into its
verified claims, or refuse it with a reason. Every token, whatever its
algorithm, goes through one PyJWT call (``_decode``) with the algorithm
pinned to what the path accepts (``HS256`` with ``settings.api.jwt_secret``;
``RS256``/``ES256`` with a JWKS key), so ``none`` and algorithm swaps fail;
``exp`` is required; ``exp``, ``nbf`` and ``iat`` (each when present) must
be finite JSON numbers, not strings, booleans, NaN or Infinity (``_dates``),
and are checked against the clock with ``LEEWAY_SECONDS`` of tolerance for
clock skew, and for nothing else; ``iss`` must equal the configured issuer
and ``aud`` (a string or a list) contain the configured audience, each when
one is configured; ``sub`` must be a non-empty string. Input: the token
text, the secret or JWKS file and those settings. Output: ``Claims``
(subject, roles, teams) or ``TokenError``. Callers: ``llmops.api.auth`` (the
principal dependency) and ``llmops up`` (``encode``, its token files).

With a JWKS file configured (``settings.api.jwks_file``), tokens whose
header ``alg`` is ``RS256`` or ``ES256`` are verified against the key whose
``kid`` the header names (``JwksFile``: read once, read again when the
file's mtime or size changes; a file that cannot be read or parsed refuses
every such token). The header's ``alg`` must be one of those two AND the
algorithm of that key (an RSA key signs RS256 only, a P-256 key ES256 only);
symmetric (``oct``) and encryption (``use: enc``) keys in the file are
ignored, so an HS256 token is never checked against a JWKS key (only ever
against ``jwt_secret``). ``verify_bearer`` picks the path from the header.
The optional ``teams`` claim (a list of strings, or a comma-separated
string) gives the teams the caller belongs to.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import jwt

from llmops.engine.errors import LlmopsError

MAX_TOKEN_BYTES = 8192
ALGORITHM = "HS256"
JWKS_ALGORITHMS = ("RS256", "ES256")
MAX_JWKS_BYTES = 1024 * 1024
LEEWAY_SECONDS = 30
"""Clock skew tolerated between the token's issuer and this server, on every date."""
DATES = ("exp", "nbf", "iat")


class TokenError(LlmopsError):
    """A bearer token that is malformed, badly signed, expired or meant for someone else."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What the API uses of a verified token."""

    subject: str
    roles: tuple[str, ...]
    teams: tuple[str, ...] = ()


def encode(claims: dict[str, Any], secret: str) -> str:
    """An HS256 token for ``claims`` (for ``llmops up`` and tools; the API only verifies)."""
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _names(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise TokenError(f"token claim {claim} is not a list of strings")
    return tuple(r.strip() for r in value if r.strip())


def _claims(claims: dict[str, Any]) -> Claims:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise TokenError("token has no subject (sub)")
    return Claims(subject=subject.strip(), roles=_names(claims, "roles"),
                  teams=_names(claims, "teams"))


def _header(token: str) -> dict[str, Any]:
    """The unverified header of a compact JWT of at most ``MAX_TOKEN_BYTES``."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("token is too long")
    if token.count(".") != 2:
        raise TokenError("token is not a compact JWT")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as err:
        raise TokenError(f"token header is malformed: {err}") from err


def claimed_subject(token: str) -> str:
    """The ``sub`` a token claims, NOT verified (for the audit row of a refused request):
    empty when the token is too long, malformed or names none."""
    if len(token) > MAX_TOKEN_BYTES:
        return ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""


def _dates(claims: dict[str, Any]) -> None:
    """Each date claim present is a finite JSON number (PyJWT also takes "123" and true)."""
    for name in DATES:
        value = claims.get(name)
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise TokenError(f"token claim {name} is not a finite number")


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired (exp)"),
    (jwt.ImmatureSignatureError, "token is not valid yet (nbf/iat)"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not this server"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted here"),
)


def _reason(err: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(err, kind):
            return reason
    if isinstance(err, jwt.MissingRequiredClaimError):
        return "token has no expiry (exp)" if err.claim == "exp" else f"token has no {err.claim}"
    return f"token is invalid: {err}"


def _decode(token: str, key: Any, algorithm: str, *, issuer: str, audience: str) -> Claims:
    """PyJWT's verification of ``token`` with ``key`` and only ``algorithm``, then ours."""
    try:
        claims = jwt.decode(
            token, key=key, algorithms=[algorithm], issuer=issuer or None,
            audience=audience or None, leeway=LEEWAY_SECONDS,
            options={"require": ["exp"], "verify_aud": bool(audience),
                     "verify_iss": bool(issuer)})
    except jwt.PyJWTError as err:
        raise TokenError(_reason(err)) from err
    if not isinstance(claims, dict):
        raise TokenError("token payload is not a JSON object")
    _dates(claims)
    return _claims(claims)


def verify(token: str, secret: str, *, issuer: str = "", audience: str = "") -> Claims:
    """The claims of an HS256 ``token`` signed with ``secret``; ``TokenError`` otherwise."""
    if not secret:
        raise TokenError("bearer tokens are not accepted by this server")
    if _header(token).get("alg") != ALGORITHM:
        raise TokenError(f"token algorithm must be {ALGORITHM}")
    return _decode(token, secret, ALGORITHM, issuer=issuer, audience=audience)


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
    header = _header(token)
    alg = header.get("alg")
    if alg not in JWKS_ALGORITHMS:
        raise TokenError(f"token algorithm must be one of {', '.join(JWKS_ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token has no key id (kid)")
    key = keys.key(kid)
    if key.algorithm_name != alg:
        raise TokenError("token algorithm does not match its key")
    return _decode(token, key.key, alg, issuer=issuer, audience=audience)


def verify_bearer(token: str, secret: str, *, jwks: JwksFile | None = None,
                  issuer: str = "", audience: str = "") -> Claims:
    """HS256 with ``secret``, or RS256/ES256 with ``jwks`` (when set), by the header's alg."""
    if jwks is not None and _header(token).get("alg") in JWKS_ALGORITHMS:
        return verify_jwks(token, jwks, issuer=issuer, audience=audience)
    return verify(token, secret, issuer=issuer, audience=audience)
