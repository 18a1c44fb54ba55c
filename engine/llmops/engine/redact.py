"""Masking of credentials in free text and plain data, before it is stored or shown.

Role: the choke point that keeps secret values out of audit rows (and any
other text llmops persists or prints): credentials in URLs
(``https://user:token@host`` -> ``https://***@host``), ``key=value`` /
``key: value`` pairs whose key names a secret (password, token, secret,
api key, ...), ``Authorization``/``Bearer`` values, and, in plain data, the
whole value of any mapping key that names a secret. Input: ``str`` or
JSON-like data; output: the same shape with secrets replaced by ``***``.
Callers: ``llmops.engine.store.audit`` (actor, target, reason and details of
every entry, before hashing), and anything else about to log or persist
text that may carry a credential. Idempotent: redacting twice changes
nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

SECRET_KEY_WORDS = (
    "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "api_key",
    "api-key", "access_key", "access-key", "accesskey", "private_key", "private-key",
    "client_secret", "client-secret", "credential", "credentials", "authorization", "auth",
    "session", "cookie", "signature", "sig",
)

# scheme://userinfo@host: the whole userinfo goes, user names included (a
# bare token is often sent as the user name, e.g. https://ghp_xxx@github.com),
# up to the authority's last '@' (a raw '@' inside a password included).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s?#]+)@")

_KEY = (r"(?:[A-Za-z0-9_.-]*?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key"
        r"|access[_-]?key|private[_-]?key|credentials?|sig|signature))")
# key=value, key: value, "key": "value" (quotes optional); the value ends at
# whitespace, '&', ';', ',' or a closing quote.
_PAIR = re.compile(
    r"(?P<key>[\"']?\b" + _KEY + r"[\"']?\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;,\"'}\]]+)",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(
    r"(?P<key>\b(?:authorization|proxy-authorization)\s*[=:]\s*)(?P<scheme>(?:bearer|basic|token)\s+)?"
    r"(?P<value>[^\s,;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>\b(?:bearer|basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})",
                     re.IGNORECASE)


def _mask_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    if value in (MASK, f'"{MASK}"', f"'{MASK}'"):
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def _mask_auth(match: re.Match[str]) -> str:
    return f"{match.group('key')}{match.group('scheme') or ''}{MASK}"


def redact(text: str) -> str:
    """``text`` with credentials in URLs, secret pairs and bearer tokens replaced by ``***``."""
    if not text:
        return text
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    out = _AUTH_HEADER.sub(_mask_auth, out)
    out = _BEARER.sub(lambda m: f"{m.group('key')}{MASK}", out)
    return _PAIR.sub(_mask_pair, out)


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (its whole value is masked)."""
    lowered = key.lower().replace(" ", "_")
    return any(word == lowered or lowered.endswith(("_" + word, "-" + word, "." + word))
               or lowered.startswith((word + "_", word + "-"))
               for word in SECRET_KEY_WORDS)


def redact_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` with secret-named keys masked and every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: (MASK if isinstance(key, str) and is_secret_key(key) and val is not None
                      else redact_data(val))
                for key, val in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value
