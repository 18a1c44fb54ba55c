"""Hostile input to the loader: every case is a clear error naming file and line,
the CLI exits 1, and nothing from that revision is loaded."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult, write_repo
from llmops.engine.errors import SpecError
from llmops.engine.spec import loader, validate

BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
)

ENDPOINT_HEAD = """\
apiVersion: llmops.io/v1alpha1
kind: ServingEndpoint
metadata: {name: other}
spec:
  environment: dev
  modelRef: {name: chat-model, version: 1.2.0}
"""

# name -> (file text or bytes, expected line, expected words in the message)
CASES: dict[str, tuple[str | bytes, int, str]] = {
    "syntax-error": ("apiVersion: llmops.io/v1alpha1\nkind: [Model\n", 3, "YAML syntax error"),
    "duplicate-top-key": ("kind: Model\nkind: Dataset\n", 2, "duplicate key 'kind'"),
    "duplicate-deep-key": (
        ENDPOINT_HEAD + "  route: /x\n  replicas:\n    min: 1\n    max: 2\n    min: 3\n",
        11, "duplicate key 'min'",
    ),
    "python-tag": ("a: !!python/object/apply:os.system ['true']\n", 1, "is not allowed"),
    "custom-tag": ("a: !Ref something\n", 1, "is not allowed"),
    "binary-tag": ("a: !!binary aGVsbG8=\n", 1, "is not allowed"),
    "billion-laughs": (BILLION_LAUGHS, 0, "alias"),
    "deep-nesting": ("a: " + "[" * 80 + "]" * 80 + "\n", 1, "nesting deeper than"),
    "not-utf8": (b"kind: Model\nname: caf\xe9\n", 2, "not valid UTF-8"),
    "not-a-mapping": ("- just\n- a list\n", 1, "must be a mapping"),
    "scalar-document": ("hello\n", 1, "must be a mapping"),
    "unknown-api-version": ("apiVersion: llmops.io/v9\nkind: Model\nmetadata: {name: x}\n", 1,
                            "unknown apiVersion"),
    "unknown-kind": ("apiVersion: llmops.io/v1alpha1\nkind: Gadget\nmetadata: {name: x}\n", 2,
                     "unknown kind 'Gadget'"),
    "complex-key": ("? [a, b]\n: c\n", 1, "mapping keys must be plain scalars"),
    "unknown-alias": ("a: *nowhere\n", 1, "unknown alias"),
}


def _check_rejected(repo: Path, bad: str, cli: Callable[..., CliResult], line: int,
                    words: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate.load_and_validate(repo, cache=None)
    messages = [str(i) for i in caught.value.issues if i.file == bad]
    assert messages, caught.value.issues
    assert any(words in m for m in messages), messages
    if line:
        assert any(m.startswith(f"{bad}:{line}:") for m in messages), messages
    result = cli("validate", repo, "--format", "json")
    assert result.code == 1
    reported = json.loads(result.out)
    assert any(r["file"] == bad and words in r["message"] for r in reported)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_rejected_with_file_and_line(
    case: str, minimal_repo: Path, cli: Callable[..., CliResult]
) -> None:
    content, line, words = CASES[case]
    bad = f"hostile/{case}.yaml"
    path = minimal_repo / bad
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _check_rejected(minimal_repo, bad, cli, line, words)


def test_billion_laughs_fails_fast_with_bounded_memory() -> None:
    assert len(BILLION_LAUGHS.encode()) < 400
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="alias"):
            loader.load_bytes(BILLION_LAUGHS.encode(), "bomb.yaml", cache=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024


def test_alias_count_is_capped() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * 150) + "]\n"
    with pytest.raises(SpecError, match="more than 100 aliases"):
        loader.load_bytes(text.encode(), "aliases.yaml", cache=None)


def test_file_over_size_cap(minimal_repo: Path, cli: Callable[..., CliResult]) -> None:
    big = minimal_repo / "models" / "huge.yaml"
    big.write_bytes(b"# " + b"x" * (1024 * 1024) + b"\n")
    _check_rejected(minimal_repo, "models/huge.yaml", cli, 0, "over the 1048576-byte cap")


def test_repo_over_total_cap(minimal_repo: Path) -> None:
    limits = loader.Limits(max_repo_bytes=600)
    with pytest.raises(SpecError, match="repo holds more than 600 bytes"):
        validate.load_and_validate(minimal_repo, limits=limits, cache=None)


def test_symlink_outside_repo_names_link_not_content(
    tmp_path: Path, minimal_repo: Path, cli: Callable[..., CliResult]
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2-very-secret\n")
    (minimal_repo / "models" / "leak.yaml").symlink_to(secret)
    _check_rejected(minimal_repo, "models/leak.yaml", cli, 0, "outside the repo")
    result = cli("validate", minimal_repo)
    assert "hunter2" not in result.out + result.err
    assert str(secret) not in result.out + result.err


def test_symlinked_directory_is_not_followed(
    tmp_path: Path, minimal_repo: Path, cli: Callable[..., CliResult]
) -> None:
    outside = write_repo(tmp_path / "outside", {"x.yaml": "kind: Model\n"})
    (minimal_repo / "more").symlink_to(outside, target_is_directory=True)
    _check_rejected(minimal_repo, "more", cli, 0, "symbolic link")


def test_symlink_inside_repo_is_rejected_too(
    minimal_repo: Path, cli: Callable[..., CliResult]
) -> None:
    (minimal_repo / "models" / "alias.yaml").symlink_to(minimal_repo / "models/chat-model.yaml")
    _check_rejected(minimal_repo, "models/alias.yaml", cli, 0, "inside the repo")


def test_fifo_is_not_read(minimal_repo: Path, cli: Callable[..., CliResult]) -> None:
    os.mkfifo(minimal_repo / "models" / "pipe.yaml")
    _check_rejected(minimal_repo, "models/pipe.yaml", cli, 0, "not a regular file")


def test_dot_folders_are_skipped(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {".github/workflows/ci.yaml": "on: [push]\njobs: {}\n",
                              ".hidden/bad.yaml": "a: [\n"})
    assert len(validate.load_and_validate(minimal_repo, cache=None).items) == 2


def test_error_in_one_file_loads_nothing_from_the_revision(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {"endpoints/dev/broken.yaml": "a: [\n"})
    with pytest.raises(SpecError) as caught:
        validate.load_and_validate(minimal_repo, cache=None)
    assert [i.file for i in caught.value.issues] == ["endpoints/dev/broken.yaml"]


def test_unchanged_file_is_parsed_once(minimal_repo: Path) -> None:
    cache = loader.ParseCache()
    validate.load_and_validate(minimal_repo, cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)
    validate.load_and_validate(minimal_repo, cache=cache)
    assert (cache.hits, cache.misses) == (3, 3)
    (minimal_repo / "endpoints/dev/chat.yaml").write_text(
        (minimal_repo / "endpoints/dev/chat.yaml").read_text().replace("max: 2", "max: 3"))
    validate.load_and_validate(minimal_repo, cache=cache)
    assert (cache.hits, cache.misses) == (5, 4)


def test_unchanged_documents_are_type_checked_once(minimal_repo: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = validate._parse_one
    monkeypatch.setattr(validate, "_parse_one", lambda doc: checked.append(doc.file) or real(doc))
    cache = loader.ParseCache()
    first = validate.load_and_validate(minimal_repo, cache=cache)
    assert len(checked) == 2  # llmops.yaml is the config, not a spec
    checked.clear()
    assert validate.load_and_validate(minimal_repo, cache=cache) == first
    assert checked == []
    (minimal_repo / "endpoints/dev/chat.yaml").write_text(
        (minimal_repo / "endpoints/dev/chat.yaml").read_text().replace("max: 2", "max: 3"))
    edited = validate.load_and_validate(minimal_repo, cache=cache)
    assert checked == ["endpoints/dev/chat.yaml"]
    assert edited != first


def test_core_schema_only() -> None:
    docs = loader.parse_documents(
        "a: on\nb: 18:00\nc: 0x1F\nd: '7'\ne: ~\nf: 1.5e3\ng: 2024-01-01\nh: !!str 12\n", "x")
    assert docs[0].data == {"a": "on", "b": "18:00", "c": 31, "d": "7", "e": None,
                            "f": 1500.0, "g": "2024-01-01", "h": "12"}


def test_positions_are_recorded_for_every_field() -> None:
    (doc,) = loader.parse_documents("spec:\n  replicas:\n    - min: 1\n      max: 2\n", "x")
    assert doc.positions[("spec", "replicas", 0, "max")] == (4, 12)
    assert doc.locate(("spec", "replicas", 0, "absent")) == (3, 7)


@pytest.mark.parametrize(("text", "value"), [
    ("null", None), ("Null", None), ("NULL", None), ("~", None), ("", None),
    ("true", True), ("False", False), ("TRUE", True), ("nul", "nul"), ("nullx", "nullx"),
    ("tRue", "tRue"), ("yes", "yes"), ("on", "on"), ("n", "n"), ("name", "name"),
    ("12", 12), ("-3", -3), ("+4", 4), ("0o17", 15), ("0x1F", 31), ("1.5", 1.5),
    ("-.5e3", -500.0), ("6.", 6.0), (".inf", float("inf")), ("-.Inf", float("-inf")),
    ("1_000", "1_000"), ("0x", "0x"), ("v1.2", "v1.2"), ("-", "-"), (".", "."),
])
def test_plain_scalars_resolve_by_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    resolved = loader._plain_scalar(text)
    assert (resolved, type(resolved)) == (value, type(value))
