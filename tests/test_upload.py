"""Model file uploads over HTTP: streamed to a real S3-protocol server, then committed to git.

moto's S3 server runs in a thread on 127.0.0.1 (``ThreadedMotoServer``);
boto3 talks to it through ``settings.s3.endpoint_url`` with dummy
credentials. Requests go through httpx's ASGI transport, which hands the
body to the app chunk by chunk as a server would (the TestClient would join
it first), so the S3-down case really fails between two parts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from test_writeback import (
    BASE,
    SECRET,
    USER,
    Snapshot,
    World,
    commit_all,
    failed,
    git,
    make_world,
    ok,
    writes,
)

from conftest import MINIMAL_MODEL_FILES
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.api.routes import writes as routes_writes
from llmops.engine import settings
from llmops.engine.store import Store

# Slow tier: every test streams to moto's S3 server (or one that is gone).
pytestmark = pytest.mark.slow

MIB = 1024 * 1024
BUCKET = "llmops-models"
MODEL = "fresh-adapter@0.1.0"
PREFIX = "models/fresh-adapter/0.1.0/"
MODEL_FILE = "models/fresh-adapter.yaml"


def add_model(world: World, name: str, version: str, kind: str, extra: str = "") -> str:
    """Commit a model version without files to the specs repo and record the catalog."""
    (world.repo / f"models/{name}.yaml").write_text(
        f"# Model: {name} {version}\n"
        f"apiVersion: llmops.io/v1alpha1\nkind: Model\nmetadata:\n  name: {name}\n"
        f"spec:\n  version: {version}\n  type: {kind}\n  ownerTeam: nlp-platform\n"
        f"  storageUri: s3://elsewhere/models/{name}/{version}/\n  framework: transformers\n"
        f"  dataClassification: internal\n{extra}")
    commit_all(world.repo, f"model {name} {version}")
    return world.record()


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    w = make_world(store, tmp_path)
    add_model(w, "fresh-adapter", "0.1.0", "adapter",
              "  baseModel:\n    name: llama-3-8b\n    version: 1.0.0\n")
    return w


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _start(*, reset: bool = True) -> tuple[ThreadedMotoServer, str]:
    """A moto server on a free port; ``reset`` empties moto's (process-wide) state first."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    if reset:
        httpx.post(f"{url}/moto-api/reset").raise_for_status()
    return server, url


@pytest.fixture
def s3_server(aws_env: None) -> Iterator[str]:
    """The moto S3 server's URL, with the model bucket created (state lives in-process)."""
    server, url = _start()
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def keys(url: str) -> list[str]:
    listing = s3(url).list_objects_v2(Bucket=BUCKET)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def make_app(world: World, endpoint: str, **s3_overrides: Any) -> Any:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET}
    s3_cfg = {"endpoint_url": endpoint, "bucket": BUCKET, "part_size_bytes": 5 * MIB,
              "max_attempts": 1, "connect_timeout_seconds": 2, **s3_overrides}
    cfg = settings.load(api=api, git={"repo": str(world.repo), "branch": "main"}, s3=s3_cfg)
    return create_app(world.store, settings=cfg)


def upload(app: Any, model: str, filename: str | None, body: AsyncIterator[bytes] | bytes, *,
           length: int | None, roles: str = "admin", raw_query: str | None = None,
           content_type: str = "application/octet-stream",
           operation: str = "upload") -> httpx.Response:
    """POST the body through the ASGI transport, chunk by chunk."""
    headers = {"X-User-Id": USER, "X-User-Roles": roles,
               "X-Proxy-Signature": proxy_signature(USER, roles, SECRET),
               "Content-Type": content_type}
    if length is not None:
        headers["Content-Length"] = str(length)
    url = f"{BASE}/catalog/models/{model}/{operation}"
    if raw_query is not None:
        url += f"?{raw_query}"
    params = {"filename": filename} if filename is not None else None

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(url, params=params, headers=headers, content=body)

    return anyio.run(send)


async def chunks(data: bytes, size: int = MIB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def payload(n: int) -> bytes:
    return (hashlib.sha256(b"llmops").digest() * (n // 32 + 1))[:n]


# --------------------------------------------------------------------------- the happy path


def test_an_upload_streams_to_s3_and_records_the_file_in_a_commit(
        world: World, s3_server: str) -> None:
    before = Snapshot.of(world.repo)
    data = payload(9 * MIB + 123)  # two parts of 5 MiB and the rest
    response = upload(make_app(world, s3_server), MODEL, "extra-00001.safetensors",
                      chunks(data), length=len(data))
    out = ok(response)
    key = PREFIX + "extra-00001.safetensors"
    assert keys(s3_server) == [key]
    stored = s3(s3_server).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert (out["sha256"], out["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert out["objectUri"] == f"s3://{BUCKET}/{key}"  # one file: at the top, as the seed had
    assert out["files"] == [{"name": "extra-00001.safetensors", "objectUri": out["objectUri"],
                             "sha256": out["sha256"], "size": len(data)}]
    assert out["branch"].startswith("llmops/upload/fresh-adapter-")
    text = git(world.repo, "show", f"{out['commit']}:{MODEL_FILE}")
    assert f"  storageUri: s3://{BUCKET}/{PREFIX}\n" in text
    assert (f"    - name: extra-00001.safetensors\n      sha256: {out['sha256']}\n"
            f"      size: {len(data)}\n") in text
    assert text.startswith("# Model: fresh-adapter 0.1.0")
    after = Snapshot.of(world.repo)
    assert (after.head, after.files, after.status) == (before.head, before.files, "")
    assert after.refs["refs/heads/main"] == before.refs["refs/heads/main"]
    row = writes(world.store)[-1]
    assert (row.result, row.source_commit) == ("succeeded", out["commit"])
    assert row.details["objects"] == [f"s3://{BUCKET}/{key}"]


def test_a_base_model_needs_config_json_first(world: World, s3_server: str) -> None:
    tip = add_model(world, "fresh-base", "0.1.0", "base")
    app = make_app(world, s3_server)
    # The body is valid; the model as it stands does not take it (409, not 422).
    body = failed(upload(app, "fresh-base@0.1.0", "weights.safetensors", payload(100),
                         length=100), 409)
    assert any("config.json" in i["message"] for i in body["data"]["issues"]), body
    assert keys(s3_server) == []  # the object went again with the refused commit
    assert git(world.repo, "for-each-ref", "--format=%(refname)", "refs/heads/llmops") == ""
    assert writes(world.store)[-1].result == "failed"

    out = ok(upload(app, "fresh-base@0.1.0", "config.json", b'{"a": 1}', length=8))
    assert out["parent"] == tip
    assert keys(s3_server) == ["models/fresh-base/0.1.0/config.json"]
    text = git(world.repo, "show", f"{out['commit']}:models/fresh-base.yaml")
    assert "  storageUri: s3://llmops-models/models/fresh-base/0.1.0/\n" in text
    assert "  files:\n" in text
    assert "name: config.json" in text


# --------------------------------------------------------------------------- refusals


def test_the_documented_raw_form_names_its_file_in_the_path(
        world: World, s3_server: str) -> None:
    """``POST .../files/{filename}`` is the raw form the OpenAPI documents (it cannot make
    ``?filename=`` required for one body type of ``.../upload`` only, which it documents
    as multipart); the file-name rules are its path parameter's published pattern."""
    app = make_app(world, s3_server)
    data = payload(1000)
    out = ok(upload(app, MODEL, None, data, length=len(data),
                    operation="files/extra-1.safetensors"))
    assert [(f["name"], f["size"]) for f in out["files"]] == [("extra-1.safetensors", 1000)]
    assert keys(s3_server) == [PREFIX + "extra-1.safetensors"]
    for bad in ("extra..bin", "extra.exe", ".hidden.bin"):
        failed(upload(app, MODEL, None, data, length=len(data), operation=f"files/{bad}"),
               422)
    doc = TestClient(app).get(f"{BASE}/openapi.json").json()["paths"]
    raw = doc[f"{BASE}/catalog/models/{{model_id}}/files/{{filename}}"]["post"]
    form = doc[f"{BASE}/catalog/models/{{model_id}}/upload"]["post"]
    assert set(raw["requestBody"]["content"]) == {"application/octet-stream"}
    assert set(form["requestBody"]["content"]) == {"multipart/form-data"}
    # a part that is not a 'files' file is refused (400), so the form admits no other field
    assert form["requestBody"]["content"]["multipart/form-data"]["schema"][
        "additionalProperties"] is False
    [name] = [p for p in raw["parameters"] if p["name"] == "filename"]
    assert name["schema"]["pattern"] == routes_writes.FILE_NAME_PATTERN
    for bad in ("extra..bin", "extra.exe", ".hidden.bin"):
        assert re.fullmatch(routes_writes.FILE_NAME_PATTERN, bad) is None
    assert keys(s3_server) == [PREFIX + "extra-1.safetensors"]


@pytest.mark.parametrize(("filename", "raw_query"), [
    ("../x.bin", None),
    (None, "filename=%2e%2e%2fx.bin"),
    (None, "filename=%252e%252e%252fx.bin"),
    ("..\u2215x.bin", None),  # DIVISION SLASH
    ("x\uff0fy.bin", None),  # FULLWIDTH SOLIDUS
    ("/etc/x.bin", None),
    ("a..b.bin", None),
    ("model.exe", None),
    ("config.json.sh", None),
])
def test_unsafe_or_disallowed_file_names_are_refused_before_any_byte_is_stored(
        world: World, s3_server: str, filename: str | None, raw_query: str | None) -> None:
    before = Snapshot.of(world.repo)
    response = upload(make_app(world, s3_server), MODEL, filename, payload(10), length=10,
                      raw_query=raw_query)
    assert response.status_code in (400, 422), response.text
    assert keys(s3_server) == []
    assert Snapshot.of(world.repo) == before


def test_missing_content_length_is_a_411(world: World, s3_server: str) -> None:
    response = upload(make_app(world, s3_server), MODEL, "x.bin", chunks(payload(10)),
                      length=None)
    failed(response, 411)
    assert keys(s3_server) == []


def test_a_form_or_other_media_type_is_refused(world: World, s3_server: str) -> None:
    app = make_app(world, s3_server)
    failed(upload(app, MODEL, "x.bin", b"a=b", length=3,
                  content_type="application/x-www-form-urlencoded"), 415)
    failed(upload(app, MODEL, "x.bin", b"{}", length=2, content_type="application/json"), 415)
    assert keys(s3_server) == []


def test_over_the_size_limit_is_a_413(world: World, s3_server: str) -> None:
    app = make_app(world, s3_server, max_file_bytes=1000)
    body = failed(upload(app, MODEL, "big.bin", chunks(payload(2000)), length=2000), 413)
    assert body["data"] == {"maxFileBytes": 1000}
    assert keys(s3_server) == []
    assert writes(world.store) == []


def test_a_body_longer_than_its_content_length_stores_nothing(
        world: World, s3_server: str) -> None:
    before = Snapshot.of(world.repo)
    response = upload(make_app(world, s3_server), MODEL, "x.bin", chunks(payload(300), 100),
                      length=200)
    assert response.status_code == 400, response.text
    assert keys(s3_server) == []
    assert Snapshot.of(world.repo) == before


def test_a_viewer_cannot_upload(world: World, s3_server: str) -> None:
    failed(upload(make_app(world, s3_server), MODEL, "x.bin", payload(10), length=10,
                  roles="viewer"), 403)
    assert keys(s3_server) == []


# --------------------------------------------------------------------------- S3 faults


def test_s3_going_down_mid_upload_is_a_503_with_no_object_and_no_commit(
        world: World, aws_env: None) -> None:
    server, url = _start()
    s3(url).create_bucket(Bucket=BUCKET)
    before = Snapshot.of(world.repo)
    data = payload(12 * MIB)
    sent = 0
    stopped = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, stopped
        async for chunk in chunks(data):
            if sent >= 6 * MIB and not stopped:
                server.stop()  # part 1 is in; S3 disappears before part 2
                stopped = True
            sent += len(chunk)
            yield chunk

    response = upload(make_app(world, url), MODEL, "weights.bin", body(), length=len(data))
    body_json = failed(response, 503)
    assert stopped
    assert "upload of part 2" in body_json["message"]
    assert Snapshot.of(world.repo) == before
    assert writes(world.store)[-1].result == "failed"
    again, url2 = _start(reset=False)  # moto's state is in-process: the same bucket
    try:
        assert keys(url2) == []
    finally:
        again.stop()


def test_s3_unreachable_is_a_503(world: World, aws_env: None) -> None:
    server, url = _start()
    server.stop()  # a port nobody listens on any more
    before = Snapshot.of(world.repo)
    failed(upload(make_app(world, url), MODEL, "x.bin", payload(10), length=10), 503)
    assert Snapshot.of(world.repo) == before
    assert [r.result for r in writes(world.store)] == ["intent", "failed"]


def test_an_unreachable_remote_repo_leaves_no_object(world: World, s3_server: str,
                                                     store: Store, tmp_path: Path) -> None:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET}
    cfg = settings.load(api=api, git={"repo": "https://127.0.0.1:1/acme/specs.git"},
                        s3={"endpoint_url": s3_server, "bucket": BUCKET},
                        home=tmp_path / "home")
    body = failed(upload(create_app(store, settings=cfg), MODEL, "x.bin", payload(10),
                         length=10), 503)
    assert body["message"]
    assert keys(s3_server) == []


# --------------------------------------------------------------------------- multipart, integrity


def upload_files(app: Any, model: str, files: list[tuple[str, bytes]], *,
                 roles: str = "admin") -> httpx.Response:
    """POST ``files`` as the seed does: multipart/form-data, one ``files`` part each."""
    headers = {"X-User-Id": USER, "X-User-Roles": roles,
               "X-Proxy-Signature": proxy_signature(USER, roles, SECRET)}

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                f"{BASE}/catalog/models/{model}/upload", headers=headers,
                files=[("files", (name, data, "application/octet-stream"))
                       for name, data in files])

    return anyio.run(send)


def test_several_files_in_one_multipart_call_make_one_commit(
        world: World, s3_server: str) -> None:
    add_model(world, "fresh-base", "0.1.0", "base")
    weights = payload(6 * MIB + 7)
    app = make_app(world, s3_server)
    out = ok(upload_files(app, "fresh-base@0.1.0",
                          [("config.json", b'{"a": 1}'), ("model.safetensors", weights)]))
    assert keys(s3_server) == ["models/fresh-base/0.1.0/config.json",
                               "models/fresh-base/0.1.0/model.safetensors"]
    assert [(f["name"], f["size"]) for f in out["files"]] == [
        ("config.json", 8), ("model.safetensors", len(weights))]
    assert out["files"][1]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert out["storageUri"] == f"s3://{BUCKET}/models/fresh-base/0.1.0/"
    # The files are in `files` only: no file of several stands at the top as if alone.
    assert not {"objectUri", "sha256", "size"} & set(out)
    assert out["files"][0]["objectUri"] == f"s3://{BUCKET}/models/fresh-base/0.1.0/config.json"
    text = git(world.repo, "show", f"{out['commit']}:models/fresh-base.yaml")
    assert f"    - name: model.safetensors\n      sha256: {out['files'][1]['sha256']}\n" in text
    # A later call adds to the same review branch, before anything is merged.
    more = ok(upload_files(app, "fresh-base@0.1.0", [("tokenizer.json", b"{}")]))
    assert (more["branch"], more["parent"]) == (out["branch"], out["commit"])
    text = git(world.repo, "show", f"{more['commit']}:models/fresh-base.yaml")
    assert text.count("    - name: ") == 3


def test_a_recorded_or_stored_file_is_never_replaced(world: World, s3_server: str) -> None:
    app = make_app(world, s3_server)
    first = ok(upload_files(app, MODEL, [("adapter.safetensors", b"one")]))
    body = failed(upload_files(app, MODEL, [("adapter.safetensors", b"two")]), 409)
    assert "new version" in body["message"]
    stored = s3(s3_server).get_object(Bucket=BUCKET, Key=PREFIX + "adapter.safetensors")
    assert stored["Body"].read() == b"one"
    # An object at the key (stored by someone else) is not overwritten either.
    s3(s3_server).put_object(Bucket=BUCKET, Key=PREFIX + "other.bin", Body=b"theirs")
    failed(upload_files(app, MODEL, [("other.bin", b"mine")]), 409)
    assert s3(s3_server).get_object(Bucket=BUCKET,
                                    Key=PREFIX + "other.bin")["Body"].read() == b"theirs"
    assert first["branch"].startswith("llmops/upload/")


def test_an_approved_or_served_version_takes_no_file(world: World, s3_server: str) -> None:
    app = make_app(world, s3_server)
    before = Snapshot.of(world.repo)
    body = failed(upload_files(app, "support-chat@1.2.0", [("extra.json", b"{}")]), 409)
    assert "approved" in body["message"]
    add_model(world, "served", "0.1.0", "base", MINIMAL_MODEL_FILES)  # an endpoint needs files
    endpoint = (world.repo / "endpoints/stg/support-chat.yaml").read_text()
    (world.repo / "endpoints/stg/served.yaml").write_text(
        endpoint.replace("name: support-chat\n", "name: served\n", 1)
        .replace("    name: support-chat\n    version: 1.2.0\n",
                 "    name: served\n    version: 0.1.0\n")
        .replace("route: /v1/support-chat", "route: /v1/served"))
    commit_all(world.repo, "serve it in stg")
    world.record()
    body = failed(upload_files(app, "served@0.1.0", [("weights.safetensors", b"{}")]), 409)
    assert "served in stg" in body["message"]
    assert keys(s3_server) == []
    assert Snapshot.of(world.repo).refs == {**before.refs,
                                            "refs/heads/main": git(world.repo, "rev-parse",
                                                                   "main").strip()}


def test_a_multipart_base_model_without_config_json_is_refused_and_stores_nothing(
        world: World, s3_server: str) -> None:
    add_model(world, "fresh-base", "0.1.0", "base")
    body = failed(upload_files(make_app(world, s3_server), "fresh-base@0.1.0",
                               [("a.safetensors", b"1"), ("b.safetensors", b"2")]), 409)
    assert any("config.json" in i["message"] for i in body["data"]["issues"]), body
    assert keys(s3_server) == []


def test_the_seeds_flow_registers_a_model_and_uploads_to_it_before_any_reconcile(
        world: World, s3_server: str) -> None:
    app = make_app(world, s3_server)
    created = ok(TestClient(app, client=("127.0.0.1", 40000), headers={
        "X-User-Id": USER, "X-User-Roles": "admin",
        "X-Proxy-Signature": proxy_signature(USER, "admin", SECRET)}).post(
        f"{BASE}/catalog/models", json={"name": "seed-model", "version": "2.0.0",
                                        "type": "base", "owner_team": "nlp-platform"}), 201)
    out = ok(upload_files(app, created["id"], [("config.json", b"{}"),
                                               ("model.bin", payload(1000))]))
    assert (out["branch"], out["parent"]) == (created["branch"], created["commit"])
    assert keys(s3_server) == ["models/seed-model/2.0.0/config.json",
                               "models/seed-model/2.0.0/model.bin"]
    text = git(world.repo, "show", f"{out['commit']}:models/seed-model-2.0.0.yaml")
    assert f"storageUri: s3://{BUCKET}/models/seed-model/2.0.0/" in text
    assert "name: model.bin" in text


def test_an_object_that_appears_during_the_upload_is_kept(world: World, s3_server: str) -> None:
    key = PREFIX + "race.bin"

    async def body() -> AsyncIterator[bytes]:
        yield b"mine-1"
        s3(s3_server).put_object(Bucket=BUCKET, Key=key, Body=b"theirs")  # after the check
        yield b"mine-2"

    before = Snapshot.of(world.repo)
    response = upload(make_app(world, s3_server), MODEL, "race.bin", body(), length=12)
    assert "never overwritten" in failed(response, 409)["message"]
    assert s3(s3_server).get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"theirs"
    assert Snapshot.of(world.repo) == before


def test_a_multipart_part_with_an_unsafe_name_or_no_file_stores_nothing(
        world: World, s3_server: str) -> None:
    app = make_app(world, s3_server)
    before = Snapshot.of(world.repo)
    response = upload_files(app, MODEL, [("config.json", b"{}"), ("../x.bin", b"1")])
    assert response.status_code in (400, 422), response.text
    headers = {"X-User-Id": USER, "X-User-Roles": "admin",
               "X-Proxy-Signature": proxy_signature(USER, "admin", SECRET)}
    form = TestClient(app, client=("127.0.0.1", 40000), headers=headers).post(
        f"{BASE}/catalog/models/{MODEL}/upload", data={"note": "not a file"})
    assert form.status_code == 415  # a url-encoded form is refused before the route
    assert keys(s3_server) == []
    assert Snapshot.of(world.repo) == before
