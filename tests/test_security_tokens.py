"""Bearer tokens and the token files of ``llmops up``: the attacks of issue #17 fail.

Every HS256 token goes through PyJWT, exactly as the RS256/ES256 path does: the dates
(``exp``, required; ``nbf``, ``iat``) must be finite numbers, so a NaN or an Infinity
(which Python's JSON reader accepts) never makes a token eternal; a token ``up`` writes
verifies when an issuer and an audience are configured; and a token file is a new 0600
file renamed into place, never a pre-existing file's mode nor a planted symlink's target.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from llmops.api import tokens
from llmops.cli import up_cmd
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog

SECRET = "tokens-test-secret-0123456789abcdef"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
HEADER = b'{"alg":"HS256","typ":"JWT"}'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_raw(payload: str, secret: str = SECRET) -> str:
    """A correctly signed HS256 token over ``payload`` exactly as given (NaN and all)."""
    signing_input = f"{_b64(HEADER)}.{_b64(payload.encode())}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def payload(**dates: Any) -> str:
    base = {"sub": "jo", "roles": ["admin"], "exp": int(time.time()) + 300}
    body = json.dumps({k: v for k, v in {**base, **dates}.items() if v is not None})
    for literal in ("NaN", "Infinity", "-Infinity"):  # json.dumps writes floats as these
        body = body.replace(f'"{literal}"', literal)
    return body


@pytest.mark.parametrize("dates", [
    {"exp": "NaN"}, {"exp": "Infinity"}, {"exp": "-Infinity"},
    {"nbf": "NaN"}, {"nbf": "-Infinity"}, {"iat": "NaN"}, {"iat": "Infinity"},
    {"exp": "9999999999"}, {"exp": True}, {"nbf": False}, {"iat": [1]},
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_hs256_dates_must_be_finite_numbers(dates: dict[str, Any]) -> None:
    text = payload(**dates)
    if any(v in ("NaN", "Infinity", "-Infinity") for v in dates.values()):
        assert json.loads(text)  # what the attacker sends is JSON Python reads
    token = hs256_raw(text)
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify_bearer(token, SECRET)
    assert next(iter(dates)) in str(caught.value), str(caught.value)


def test_hs256_iat_in_the_future_and_a_missing_exp_are_refused() -> None:
    with pytest.raises(tokens.TokenError, match="not valid yet"):
        tokens.verify_bearer(hs256_raw(payload(iat=int(time.time()) + 3600)), SECRET)
    with pytest.raises(tokens.TokenError, match="exp"):
        tokens.verify_bearer(hs256_raw(payload(exp=None)), SECRET)


def test_leeway_covers_clock_skew_only() -> None:
    now = int(time.time())
    skewed = hs256_raw(payload(exp=now - 5, nbf=now + 5, iat=now + 5))
    assert tokens.verify_bearer(skewed, SECRET).subject == "jo"
    late = hs256_raw(payload(exp=now - tokens.LEEWAY_SECONDS - 5))
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify_bearer(late, SECRET)
    early = hs256_raw(payload(nbf=now + tokens.LEEWAY_SECONDS + 60))
    with pytest.raises(tokens.TokenError, match="not valid yet"):
        tokens.verify_bearer(early, SECRET)


def test_the_hand_written_verifier_is_gone() -> None:
    assert not hasattr(tokens, "_signature")
    assert not hasattr(tokens, "_b64decode")


def _home(tmp_path: Path, store: Store, **api: Any) -> settings.Settings:
    catalog.record(store, "a" * 40, validate.load_and_validate(TEMPLATE))
    return settings.load(home=tmp_path / "home", api={"jwt_secret": SECRET, **api})


def test_up_tokens_verify_with_issuer_and_audience(tmp_path: Path, store: Store) -> None:
    cfg = _home(tmp_path, store, jwt_issuer="https://sso.example.com",
                jwt_audience="llmops-api")
    written = up_cmd.write_tokens(cfg, store)
    for role, path in written.items():
        claims = tokens.verify_bearer(path.read_text().strip(), SECRET,
                                      issuer="https://sso.example.com",
                                      audience="llmops-api")
        assert claims.roles == (role,)


def test_a_token_file_is_a_new_0600_file_whatever_was_there(tmp_path: Path,
                                                             store: Store) -> None:
    cfg = _home(tmp_path, store)
    folder = cfg.home / "tokens"
    folder.mkdir(parents=True)
    (folder / "viewer").write_text("old\n")
    (folder / "viewer").chmod(0o644)  # a file left readable by everyone
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    (folder / "admin").symlink_to(victim)  # planted where up writes the admin token
    (cfg.home / "api-token").symlink_to(victim)
    written = up_cmd.write_tokens(cfg, store)
    assert victim.read_text() == "precious\n"
    for path in (*written.values(), cfg.home / "api-token"):
        info = os.lstat(path)
        assert stat.S_ISREG(info.st_mode), path
        assert stat.S_IMODE(info.st_mode) == 0o600, (path, oct(info.st_mode))
    assert sorted(p.name for p in folder.iterdir()) == sorted(written)  # no temp files left
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_llmops_home_is_private(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / ".llmops"
    up_cmd.private_home(fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    up_cmd.private_home(shared)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o700
