"""Concurrent writes: ten at once through the served API all land, one commit each, none lost.

The API runs under uvicorn on loopback; ten threads register ten models at the same
time. With ``directCommits`` in every environment each registration is a commit on
``main`` (of a checked-out clone, a bare repo, or a remote reached through the
write-back mirror); without it each goes to its own review branch. Writes to one
branch queue on a file lock in the repo's git directory (``source/writelock``), so
they also queue across processes: a lock held by another open file (as another
worker process would hold it) makes a write wait, and a wait past its limit is a
clear 409 with nothing written.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_writeback import GIT_ENV, SECRET, USER, World, _allow_direct, git, make_world

from conftest import serving_app
from llmops.api import errors as api_errors
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.source import scaffold, specedits, writeback, writelock
from llmops.engine.store import Store

BASE = "/llm-ops/v1"
WRITERS = 10
HEADERS = {"X-User-Id": USER, "X-User-Roles": "admin",
           "X-Proxy-Signature": proxy_signature(USER, "admin", SECRET)}


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    return make_world(store, tmp_path)


def _model(i: int) -> dict[str, Any]:
    return {"name": f"concurrent-{i}", "version": "1.0.0", "type": "base",
            "owner_team": "nlp-platform", "metadata": {"framework": "transformers"}}


def _register_all(store: Store, repo: str, *homes: Path) -> list[httpx.Response]:
    """``WRITERS`` model registrations sent at once to the API served on loopback, spread
    over one served app per ``home`` (each its own write-back mirror of a remote)."""
    apps = [create_app(store, settings=settings.load(
        api={"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET},
        git={"repo": repo, "branch": "main"}, home=home)) for home in homes]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(WRITERS) as pool:
        bases = [stack.enter_context(serving_app(app)) for app in apps]

        def post(i: int) -> httpx.Response:
            return httpx.post(f"{bases[i % len(bases)]}{BASE}/catalog/models", json=_model(i),
                              headers=HEADERS, timeout=120)
        return list(pool.map(post, range(WRITERS)))


def _where(world: World, kind: str) -> tuple[str, Path]:
    """(the repo setting, the git dir to check) for a checked-out clone, a bare repo
    or a remote behind the write-back mirror."""
    if kind == "worktree":
        return str(world.repo), world.repo
    bare = world.repo.parent / "specs.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(world.repo), str(bare)], check=True,
                   env={"PATH": os.environ.get("PATH", ""), **GIT_ENV})
    return (bare.as_uri() if kind.startswith("remote") else str(bare)), bare


@pytest.mark.slow  # the API under uvicorn on loopback
@pytest.mark.parametrize("kind", ["worktree", "bare", "remote", "remote-two-mirrors"])
def test_ten_concurrent_direct_commits_all_land(world: World, store: Store, tmp_path: Path,
                                                kind: str) -> None:
    """``remote-two-mirrors``: two API servers with their own homes (two hosts) push to
    one remote, so their pushes race on the remote itself."""
    _allow_direct(world, "dev", "stg", "prod")
    world.record()
    repo, checked = _where(world, kind)
    before = git(checked, "rev-parse", "refs/heads/main").strip()
    homes = [tmp_path / "home"] + ([tmp_path / "home2"] if kind.endswith("mirrors") else [])
    responses = _register_all(store, repo, *homes)
    if len(homes) > 1:  # no lock spans hosts: a writer that keeps losing the push gets a 409
        for refused in (r for r in responses if r.status_code == 409):
            assert "main kept moving on the remote while committing (6 pushes rejected)" in \
                refused.json()["message"]
        assert sum(r.status_code == 201 for r in responses) >= WRITERS - 2
        responses = [r for r in responses if r.status_code != 409]
    assert [r.status_code for r in responses] == [201] * len(responses), \
        [r.json()["message"] for r in responses]
    data = [r.json()["data"] for r in responses]
    assert all(d["direct"] and d["branch"] == "main" for d in data), [d["reason"] for d in data]
    # One linear chain of ten commits on main, each answer's commit in it, none lost.
    chain = git(checked, "rev-list", "--first-parent", f"{before}..refs/heads/main").split()
    assert sorted(chain) == sorted(d["commit"] for d in data)
    assert git(checked, "rev-list", "--merges", f"{before}..refs/heads/main") == ""
    tip = chain[0]
    for d in data:
        assert git(checked, "rev-parse", f"{d['commit']}^").strip() == d["parent"]
        text = git(checked, "show", f"{tip}:{d['file']}")
        assert f"name: {d['name'].split('@')[0]}\n" in text
        assert "version: 1.0.0" in text
    if kind == "worktree":  # the checked-out work tree followed every commit
        assert git(checked, "rev-parse", "HEAD").strip() == tip
        assert git(checked, "status", "--porcelain") == ""


@pytest.mark.slow  # the API under uvicorn on loopback
def test_ten_concurrent_writes_each_get_a_review_branch(world: World, store: Store,
                                                        tmp_path: Path) -> None:
    before = git(world.repo, "rev-parse", "refs/heads/main").strip()
    responses = _register_all(store, str(world.repo), tmp_path / "home")
    assert [r.status_code for r in responses] == [201] * WRITERS, \
        [r.json()["message"] for r in responses]
    data = [r.json()["data"] for r in responses]
    assert len({d["branch"] for d in data}) == WRITERS
    for i, d in enumerate(data):
        assert not d["direct"]
        assert d["branch"].startswith("llmops/create/concurrent-")
        assert d["parent"] == before
        assert git(world.repo, "rev-parse", f"refs/heads/{d['branch']}").strip() == d["commit"]
        assert f"name: concurrent-{i}\n" in git(world.repo, "show", f"{d['commit']}:{d['file']}")
    assert git(world.repo, "rev-parse", "refs/heads/main").strip() == before


# --------------------------------------------------------------------------- the lock itself


def _conclude(repo: Path) -> writeback.WriteResult:
    target = writeback.Target(kind="PromptExperiment", name="support-greeting-v2-vs-v3",
                              file="experiments/support-greeting-v2-vs-v3.yaml",
                              environment="prod")
    return writeback.commit_edit(repo, "main", target,
                                 specedits.conclude_experiment(target.name,
                                                               "support-greeting-v3", None),
                                 action="conclude", author=writeback.Author(USER),
                                 message="Conclude\n")


def test_a_write_waits_for_a_lock_held_elsewhere_and_a_long_wait_is_a_clear_409(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "specs"
    scaffold.init_repo(repo)
    tip = git(repo, "rev-parse", "refs/heads/main").strip()
    monkeypatch.setattr(writelock, "WAIT_SECONDS", 0.3)
    path = writelock.lock_path(repo / ".git", "main")
    path.parent.mkdir()
    held = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # another open file: as another worker process holds it
    try:
        started = time.monotonic()
        with pytest.raises(writelock.Busy) as caught:
            _conclude(repo)
        assert time.monotonic() - started >= 0.3
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    assert str(caught.value).startswith("other writes to main of ")
    assert str(caught.value).endswith("kept it busy for 0.3 s; nothing was written, retry")
    response = api_errors.category_response(caught.value)
    assert response is not None
    assert response.status_code == 409
    assert git(repo, "rev-parse", "refs/heads/main").strip() == tip  # nothing written
    assert git(repo, "for-each-ref", "refs/heads/llmops/") == ""
    assert _conclude(repo).branch.startswith("llmops/conclude/")  # released: it lands


def _write_from_a_process(repo: str, first: int, count: int) -> list[str]:
    """``count`` new Model specs committed straight onto main, one commit each."""
    commits = []
    for i in range(first, first + count):
        target = writeback.Target(kind="Model", name=f"proc-{i}",
                                  file=f"models/proc-{i}.yaml", spec_name=f"proc-{i}@1.0.0")
        text = (f"apiVersion: llmops.io/v1alpha1\nkind: Model\nmetadata:\n  name: proc-{i}\n"
                "  labels:\n    team: nlp-platform\nspec:\n  version: 1.0.0\n  type: base\n"
                f"  ownerTeam: nlp-platform\n  storageUri: s3://llmops-models/models/proc-{i}/1.0.0/\n"
                "  framework: transformers\n  dataClassification: internal\n")
        done = writeback.commit_edit(Path(repo), "main", target,
                                     lambda _old, text=text: text, action="create",
                                     author=writeback.Author(USER), message=f"proc {i}\n",
                                     create=True)
        assert done.direct, done.reason
        commits.append(done.commit)
    return commits


@pytest.mark.slow  # spawns Python processes
def test_writers_in_separate_processes_queue_and_none_is_lost(tmp_path: Path) -> None:
    work = tmp_path / "specs"
    scaffold.init_repo(work)
    _allow_direct(World(repo=work, store=None, client=None),  # type: ignore[arg-type]
                  "dev", "stg", "prod")
    bare = tmp_path / "specs.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True,
                   env={"PATH": os.environ.get("PATH", ""), **GIT_ENV})
    before = git(bare, "rev-parse", "refs/heads/main").strip()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_write_from_a_process, [(str(bare), n * 3, 3) for n in range(2)])
    landed = [c for commits in results for c in commits]
    chain = git(bare, "rev-list", "--first-parent", f"{before}..refs/heads/main").split()
    assert len(landed) == 6
    assert sorted(chain) == sorted(landed)
    files = git(bare, "ls-tree", "-r", "--name-only", "refs/heads/main", "models/").split()
    assert {f"models/proc-{i}.yaml" for i in range(6)} <= set(files)
