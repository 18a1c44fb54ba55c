"""`llmops fetch-model` against a real S3-protocol server: copy, verify, refuse, resume.

moto's S3 server runs in a thread on 127.0.0.1; the model's files (a
config.json and a small safetensors file built here byte by byte) are put
under ``models/<name>/<version>/`` as the upload route stores them, and the
command is run as the init container runs it: options or ``LLMOPS_MODEL_*``
environment variables, the endpoint from ``LLMOPS_S3__ENDPOINT_URL``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from test_serving import specs, write

from conftest import CliResult
from llmops.engine import settings
from llmops.engine.spec import schema, validate
from llmops.engine.store import modelfetch
from llmops.renderers import render_environment

pytestmark = pytest.mark.slow

BUCKET = "acme-llm-models"
URI = f"s3://{BUCKET}/models/tiny-llm/1.0.0/"
PREFIX = "models/tiny-llm/1.0.0/"
MIB = 1024 * 1024


def safetensors_bytes(n_floats: int) -> bytes:
    """A valid safetensors file: one F32 tensor of ``n_floats`` values."""
    header = json.dumps({"weight": {"dtype": "F32", "shape": [n_floats],
                                    "data_offsets": [0, 4 * n_floats]}}).encode()
    header += b" " * (-len(header) % 8)
    data = b"".join(struct.pack("<f", i / 7) for i in range(n_floats))
    return struct.pack("<Q", len(header)) + header + data


CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64}).encode()
WEIGHTS = safetensors_bytes(3 * MIB // 4 + 123)  # about 3 MiB: several chunks


def entry(name: str, body: bytes) -> dict[str, Any]:
    return {"name": name, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}


FILES = [entry("config.json", CONFIG), entry("model.safetensors", WEIGHTS)]


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """moto's S3 server with the model bucket; the settings point at it."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    httpx.post(f"{url}/moto-api/reset").raise_for_status()
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("LLMOPS_S3__ENDPOINT_URL", url)
    monkeypatch.setenv("LLMOPS_S3__MAX_ATTEMPTS", "1")
    try:
        yield url
    finally:
        server.stop()


def put(url: str, name: str, body: bytes) -> None:
    boto3.client("s3", endpoint_url=url).put_object(Bucket=BUCKET, Key=PREFIX + name, Body=body)


@pytest.fixture
def model(s3_server: str) -> str:
    put(s3_server, "config.json", CONFIG)
    put(s3_server, "model.safetensors", WEIGHTS)
    return s3_server


def fetch_cli(cli: Callable[..., CliResult], dest: Path, files: Any = FILES) -> CliResult:
    return cli("fetch-model", "--uri", URI, "--dest", dest, "--files", json.dumps(files))


def test_copies_and_verifies_every_file(model: str, tmp_path: Path,
                                        cli: Callable[..., CliResult]) -> None:
    dest = tmp_path / "models" / "tiny-llm"
    result = fetch_cli(cli, dest)
    assert result.code == 0, result.err
    assert (dest / "config.json").read_bytes() == CONFIG
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS
    assert "2 files verified (2 copied, 0 resumed, 0 already present" in result.out
    assert not list((dest / modelfetch.PARTIAL_DIR).iterdir())


def test_env_variables_as_the_init_container_sets_them(
        model: str, tmp_path: Path, cli: Callable[..., CliResult],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_MODEL_URI", URI)
    monkeypatch.setenv("LLMOPS_MODEL_FILES", json.dumps(FILES))
    result = cli("fetch-model", "--dest", tmp_path / "m")
    assert result.code == 0, result.err
    again = cli("fetch-model", "--dest", tmp_path / "m")
    assert again.code == 0, again.err
    assert "(0 copied, 0 resumed, 2 already present; 0 bytes downloaded)" in again.out


def test_corrupted_file_is_refused_and_not_put_in_place(
        model: str, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    altered = bytearray(WEIGHTS)
    altered[-1] ^= 0xFF  # same size, one bit pattern changed
    put(model, "model.safetensors", bytes(altered))
    dest = tmp_path / "m"
    result = fetch_cli(cli, dest)
    assert result.code == 1
    assert f"{URI}model.safetensors: sha256" in result.err
    assert "altered or corrupted" in result.err
    assert "Traceback" not in result.err
    assert not (dest / "model.safetensors").exists()
    assert not (dest / modelfetch.MARKER_FILE).exists()


def test_missing_file_names_the_object(model: str, tmp_path: Path,
                                       cli: Callable[..., CliResult]) -> None:
    files = [*FILES, entry("tokenizer.json", b"{}")]
    result = fetch_cli(cli, tmp_path / "m", files)
    assert result.code == 1
    assert f"{URI}tokenizer.json: not found" in result.err


def test_object_of_another_size_is_refused(model: str, tmp_path: Path,
                                           cli: Callable[..., CliResult]) -> None:
    put(model, "config.json", CONFIG + b"\n")
    result = fetch_cli(cli, tmp_path / "m")
    assert result.code == 1
    assert "config.json: longer than the" in result.err
    put(model, "config.json", CONFIG[:-1])
    result = fetch_cli(cli, tmp_path / "m")
    assert result.code == 1
    assert f"{len(CONFIG) - 1} bytes in storage, {len(CONFIG)} recorded" in result.err


class Interrupted(Exception):
    pass


def _interrupt_after(limit: int) -> modelfetch.OnChunk:
    def on_chunk(name: str, received: int) -> None:
        if name == "model.safetensors" and received >= limit:
            raise Interrupted

    return on_chunk


def test_interrupted_copy_resumes_where_it_stopped(model: str, tmp_path: Path,
                                                   cli: Callable[..., CliResult]) -> None:
    dest = tmp_path / "m"
    files = [schema.ModelFile.model_validate(f) for f in FILES]
    s3 = modelfetch.reader(settings.load().s3)
    with pytest.raises(Interrupted):
        modelfetch.fetch(s3, URI, dest, files, on_chunk=_interrupt_after(MIB))
    part = dest / modelfetch.PARTIAL_DIR / "model.safetensors.part"
    done = part.stat().st_size
    assert 0 < done < len(WEIGHTS)
    assert not (dest / "model.safetensors").exists()

    result = fetch_cli(cli, dest)
    assert result.code == 0, result.err
    assert "1 resumed, 1 already present" in result.out
    assert f"; {len(WEIGHTS) - done} bytes downloaded" in result.out
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS


def test_resumed_copy_with_bad_partial_bytes_starts_over(model: str, tmp_path: Path) -> None:
    dest = tmp_path / "m"
    (dest / modelfetch.PARTIAL_DIR).mkdir(parents=True)
    (dest / modelfetch.PARTIAL_DIR / "model.safetensors.part").write_bytes(b"\0" * MIB)
    files = [schema.ModelFile.model_validate(f) for f in FILES]
    result = modelfetch.fetch(modelfetch.reader(settings.load().s3), URI, dest, files)
    assert result.copied == ["config.json", "model.safetensors"]
    assert (dest / "model.safetensors").read_bytes() == WEIGHTS


def test_file_altered_after_a_fetch_is_fetched_again(model: str, tmp_path: Path,
                                                     cli: Callable[..., CliResult]) -> None:
    dest = tmp_path / "m"
    assert fetch_cli(cli, dest).code == 0
    (dest / modelfetch.MARKER_FILE).unlink()  # no marker: every file is hashed again
    (dest / "config.json").write_bytes(CONFIG.upper())
    result = fetch_cli(cli, dest)
    assert result.code == 0, result.err
    assert "(1 copied, 0 resumed, 1 already present" in result.out
    assert (dest / "config.json").read_bytes() == CONFIG


@pytest.mark.parametrize(("files", "message"), [
    ("not json", "--files / LLMOPS_MODEL_FILES: (top level): Invalid JSON"),
    (json.dumps([{"name": "../x.json", "sha256": "0" * 64, "size": 1}]), "0.name:"),
    ("[]", "the model lists no files"),
])
def test_bad_file_list_is_a_clear_error(s3_server: str, tmp_path: Path, files: str,
                                        message: str, cli: Callable[..., CliResult]) -> None:
    result = cli("fetch-model", "--uri", URI, "--dest", tmp_path / "m", "--files", files)
    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err


def test_bad_uri_is_a_clear_error(s3_server: str, tmp_path: Path,
                                  cli: Callable[..., CliResult]) -> None:
    result = cli("fetch-model", "--uri", "s3://x/../../etc", "--dest", tmp_path / "m",
                 "--files", json.dumps(FILES))
    assert result.code == 1
    assert "is not s3://<bucket>/<prefix>/" in result.err


def test_unreachable_storage_is_reported(tmp_path: Path, cli: Callable[..., CliResult],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("LLMOPS_S3__ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LLMOPS_S3__MAX_ATTEMPTS", "1")
    monkeypatch.setenv("LLMOPS_S3__CONNECT_TIMEOUT_SECONDS", "1")
    result = fetch_cli(cli, tmp_path / "m")
    assert result.code == 1
    assert "S3 GET failed" in result.err


def test_rendered_init_container_loads_what_the_server_is_started_on(
        s3_server: str, tmp_path: Path, cli: Callable[..., CliResult],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Render an endpoint, run its init container's command and env, find the model at --model."""
    files = specs()
    files["llmops.yaml"]["environments"]["dev"]["serving"]["storage"]["endpointUrl"] = s3_server
    base = files["models/base.yaml"]["spec"]
    base.update(storageUri=f"s3://{BUCKET}/models/base/1.0.0/", files=FILES)
    for name, body in (("config.json", CONFIG), ("model.safetensors", WEIGHTS)):
        boto3.client("s3", endpoint_url=s3_server).put_object(
            Bucket=BUCKET, Key=f"models/base/1.0.0/{name}", Body=body)
    objs = render_environment(validate.load_and_validate(write(tmp_path / "repo", files)), "dev")
    (deployment,) = [o for o in objs if o["kind"] == "Deployment"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    (server,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                 if c["name"] != "router"]  # the prompt router beside it
    assert init["envFrom"] == [{"secretRef": {"name": "model-store"}}]  # the AWS_* env here
    for var in init["env"]:
        monkeypatch.setenv(var["name"], var["value"])
    command = init["command"]
    assert command[:3] == ["llmops", "fetch-model", "--dest"]
    root = tmp_path / "volume"  # the pod's /models
    result = cli(*command[1:3], root / Path(command[3]).relative_to("/models"))
    assert result.code == 0, result.err
    model_dir = root / Path(server["args"][server["args"].index("--model") + 1]).relative_to(
        "/models")
    assert (model_dir / "config.json").read_bytes() == CONFIG
    assert (model_dir / "model.safetensors").read_bytes() == WEIGHTS
