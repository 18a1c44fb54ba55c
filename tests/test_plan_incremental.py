"""`llmops plan` reads revisions from git objects, renders each unchanged spec once,
diffs only objects that are not the very same on both sides, and prints exactly what the
full plan (both revisions exported, loaded, rendered and compared object by object)
prints, for every kind of change a pull request makes."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import synth
from test_plan import commit, git

from conftest import CliResult, edit
from llmops.cli import plan_cmd
from llmops.engine.plan import planner
from llmops.engine.source import commits
from llmops.engine.spec import loader, validate

Cli = Callable[..., CliResult]
NOW = "2026-12-07T12:00:00+00:00"


def full_plan(repo: Path, base: str, head: str) -> tuple[int, dict[str, str]]:
    """The plan the slow way, in every format: both revisions written out and loaded from
    disk with no parse cache, each side rendered with its own cache, every object
    compared."""
    with commits.snapshot(repo, base) as b, commits.snapshot(repo, head) as h:
        result = planner.build_plan(
            validate.load_and_validate(b.path, cache=None),
            validate.load_and_validate(h.path, cache=None), None,
            plan_cmd._parse_now(NOW), base_revision=b.revision, head_revision=h.revision,
            full=True)
    printed = {}
    for fmt, render in plan_cmd.RENDERERS.items():
        out = io.StringIO()
        render(result, out)
        printed[fmt] = out.getvalue()
    return (plan_cmd.EXIT_FAILED if result.denied else plan_cmd.EXIT_OK), printed


def change_history(repo: Path) -> list[tuple[str, str]]:
    """One commit per kind of change on top of the synthetic repo: (label, commit)."""
    shas = [("endpoint edit", git(repo, "rev-parse", "HEAD"))]
    edit(repo, "models/model-0.yaml", "size: 654", "size: 655")  # every endpoint on it
    shas.append(("model edit", commit(repo, "model-0: config.json size")))
    edit(repo, "policies/governance.yaml", "gpus: 48, pricePerGpuHour: 0.85",
         "gpus: 3, pricePerGpuHour: 0.95")  # surge no longer fits; a budget denial
    shas.append(("policy edit", commit(repo, "team-0 dev budget")))
    experiment = sorted((repo / "experiments").glob("*.yaml"))[0]
    experiment.unlink()
    shas.append(("file deleted", commit(repo, f"drop {experiment.name}")))
    text = (repo / "endpoints/stg/endpoint-1.yaml").read_text(encoding="utf-8")
    (repo / "endpoints/stg/endpoint-new.yaml").write_text(
        text.replace("endpoint-1", "endpoint-new"), encoding="utf-8")
    shas.append(("file added", commit(repo, "endpoint-new")))
    edit(repo, "llmops.yaml", "ingressClassName: nginx", "ingressClassName: traefik")
    shas.append(("llmops.yaml change", commit(repo, "dev ingress class")))
    return shas


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    repo = synth.generate(tmp_path_factory.mktemp("incremental") / "specs", 30, commits=1)
    return repo, change_history(repo)


def test_incremental_plan_prints_what_the_full_plan_prints(
        history: tuple[Path, list[tuple[str, str]]], cli: Cli) -> None:
    repo, shas = history
    ranges = [(f"{shas[i - 1][1]}", sha, label) for i, (label, sha) in enumerate(shas) if i]
    ranges += [(f"{shas[0][1]}~1", shas[0][1], "endpoint edit"),
               (f"{shas[0][1]}~1", shas[-1][1], "all of them at once")]
    codes = set()
    for base, head, label in ranges:
        code, expected = full_plan(repo, base, head)
        for fmt, text in expected.items():
            result = cli("plan", repo, "--base", base, "--head", head, "--now", NOW,
                         "--format", fmt)
            assert (result.code, result.out) == (code, text), (label, fmt)
        codes.add(code)
    assert codes == {plan_cmd.EXIT_OK, plan_cmd.EXIT_FAILED}  # the budget cut is denied


def test_the_base_revision_reads_only_the_files_that_differ(
        history: tuple[Path, list[tuple[str, str]]]) -> None:
    repo, shas = history
    blobs: dict[str, bytes] = {}
    head_sha, _ = commits.load(repo, shas[1][1], blobs=blobs, cache=None)
    read_for_head = len(blobs)
    base_sha, base = commits.load(repo, shas[0][1], blobs=blobs, cache=None)
    assert (head_sha, base_sha) == (shas[1][1], shas[0][1])
    assert len(blobs) == read_for_head + 1  # models/model-0.yaml as it was
    with commits.snapshot(repo, shas[0][1]) as snap:
        exported = loader.load_repo(snap.path, cache=None)
    assert base.files == exported.files
    assert [(d.file, d.line, d.data) for d in base.documents] == [
        (d.file, d.line, d.data) for d in exported.documents]


def test_a_revision_holding_a_link_is_loaded_as_from_a_checkout(tmp_path: Path) -> None:
    repo = synth.generate(tmp_path / "specs", 10, commits=1)
    (repo / "models/linked.yaml").symlink_to("/etc/hostname")
    commit(repo, "a link")
    _, loaded = commits.load(repo, "HEAD", cache=None)
    with commits.snapshot(repo, "HEAD") as snap:
        exported = loader.load_repo(snap.path, cache=None)
    assert [i.message for i in loaded.issues] == [i.message for i in exported.issues]
    assert any("symbolic link" in i.message for i in loaded.issues)
