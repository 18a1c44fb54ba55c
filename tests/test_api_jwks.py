"""Bearer tokens signed with an asymmetric key from a JWKS file (RS256, ES256).

Keys are generated in the test with ``cryptography``, published in a JWKS
file, and tokens signed with PyJWT. The API verifies them by ``kid`` against
that file (re-read when it changes) and refuses, with a 401, unknown key
ids, tampered signatures, expired tokens, algorithm confusion (an HS256
token "signed" with the public key) and ``none``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from llmops.api import tokens
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
ISSUER = "https://sso.example.com"
AUDIENCE = "llmops-api"
JWT_SECRET = "jwks-test-hs256-secret-0123456789"
URL = f"{BASE}/catalog/models"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else ECAlgorithm
    data: dict[str, Any] = json.loads(algorithm.to_jwk(key))
    return {**data, "kid": kid, "use": "sig"}


def write_jwks(path: Path, *keys: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(keys)}))


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "jo", "roles": ["viewer"], "exp": int(time.time()) + 300,
                            "iss": ISSUER, "aud": AUDIENCE}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def rs256(kid: str = "rsa-1", key: Any = RSA_KEY, **extra: Any) -> str:
    return jwt.encode(claims(**extra), key, algorithm="RS256", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_with(secret: bytes, kid: str = "rsa-1", **extra: Any) -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims(**extra)).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def refused(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    message: str = response.json()["message"]
    return message


@pytest.fixture
def jwks_path(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(RSA_KEY.public_key(), "rsa-1"), jwk(EC_KEY.public_key(), "ec-1"))
    return path


@pytest.fixture
def make_client(store: Store, jwks_path: Path) -> Callable[..., TestClient]:
    catalog.record(store, "a" * 40, validate.load_and_validate(TEMPLATE))

    def make(**api: Any) -> TestClient:
        cfg = {"jwks_file": str(jwks_path), "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE,
               **api}
        app = create_app(store, settings=settings.load(api=cfg))
        return TestClient(app, client=("203.0.113.9", 41000))

    return make


def test_valid_rs256_and_es256_tokens_are_accepted(make_client: Callable[..., TestClient]
                                                   ) -> None:
    client = make_client()
    response = client.get(URL, headers=bearer(rs256()))
    assert response.status_code == 200, response.text
    es = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})
    assert client.get(URL, headers=bearer(es)).status_code == 200


def test_unknown_kid_tampering_expiry_and_claims_are_401(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert "kid" in refused(client.get(URL, headers=bearer(rs256(kid="rsa-2"))))
    header, payload, signature = rs256().split(".")
    forged = b64(json.dumps(claims(roles=["admin"])).encode())
    assert "signature" in refused(client.get(URL, headers=bearer(
        f"{header}.{forged}.{signature}")))
    flipped = signature[:-6] + ("AAAAAA" if not signature.endswith("AAAAAA") else "BBBBBB")
    refused(client.get(URL, headers=bearer(f"{header}.{payload}.{flipped}")))
    assert "expired" in refused(client.get(URL, headers=bearer(
        rs256(exp=int(time.time()) - tokens.LEEWAY_SECONDS - 5))))
    assert "exp" in refused(client.get(URL, headers=bearer(rs256(exp=None))))
    assert "issuer" in refused(client.get(URL, headers=bearer(rs256(iss="https://evil"))))
    assert "audience" in refused(client.get(URL, headers=bearer(rs256(aud="other"))))
    assert "subject" in refused(client.get(URL, headers=bearer(rs256(sub=""))))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in refused(client.get(URL, headers=bearer(rs256(key=other))))
    # The EC key's kid with an RS256 header: the key decides the algorithm.
    assert "algorithm" in refused(client.get(URL, headers=bearer(rs256(kid="ec-1"))))


def test_algorithm_confusion_and_none_are_refused(make_client: Callable[..., TestClient]
                                                  ) -> None:
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    der = RSA_KEY.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    jwks_only = make_client()
    for secret in (pem, der, json.dumps(jwk(RSA_KEY.public_key(), "rsa-1")).encode()):
        refused(jwks_only.get(URL, headers=bearer(hs256_with(secret))))
    _, payload, _ = rs256().split(".")
    for alg in ("none", "None", "RS512", "PS256", "HS256"):
        header = b64(json.dumps({"alg": alg, "kid": "rsa-1"}).encode())
        refused(jwks_only.get(URL, headers=bearer(f"{header}.{payload}.")))

    # With an HS256 secret configured as well, HS256 is checked against that secret only.
    both = make_client(jwt_secret=JWT_SECRET)
    assert "signature" in refused(both.get(URL, headers=bearer(hs256_with(pem))))
    good = tokens.encode(claims(), JWT_SECRET)
    assert both.get(URL, headers=bearer(good)).status_code == 200
    assert both.get(URL, headers=bearer(rs256())).status_code == 200


def test_the_jwks_file_is_reread_when_it_changes(
        make_client: Callable[..., TestClient], jwks_path: Path) -> None:
    client = make_client()
    assert client.get(URL, headers=bearer(rs256())).status_code == 200
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_jwks(jwks_path, jwk(rotated.public_key(), "rsa-2"))
    stat = jwks_path.stat()
    os.utime(jwks_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert client.get(URL, headers=bearer(rs256(kid="rsa-2", key=rotated))).status_code == 200
    refused(client.get(URL, headers=bearer(rs256())))  # the old key is gone
    jwks_path.write_text("not json")
    refused(client.get(URL, headers=bearer(rs256(kid="rsa-2", key=rotated))))
    jwks_path.unlink()
    assert "JWKS" in refused(client.get(URL, headers=bearer(rs256(kid="rsa-2", key=rotated))))


def test_symmetric_keys_in_the_jwks_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "oct.json"
    write_jwks(path, {"kty": "oct", "kid": "hs", "k": b64(b"shared-secret-bytes")})
    keys = tokens.JwksFile(str(path))
    with pytest.raises(tokens.TokenError, match="kid"):
        keys.key("hs")
    token = hs256_with(b"shared-secret-bytes", kid="hs")
    with pytest.raises(tokens.TokenError, match="algorithm"):
        tokens.verify_jwks(token, keys)


def test_teams_come_from_the_token() -> None:
    assert tokens.verify(tokens.encode(claims(teams=["a", "b"]), "s"), "s").teams == ("a", "b")
