"""Publishing a hydrated set when things go wrong: nothing left behind, the last set kept.

A publish that fails midway (an error, a full disk) removes its staging directory,
and the set published before stays published and readable; a staging directory a
killed publisher left is removed by the next publisher; the pass that failed says why,
and the next pass publishes. The disk-full case runs twice: with ``ENOSPC`` injected
at the one place a set's bytes are written (fast), and on a real 256 KiB tmpfs when
this process may mount one (slow; skipped without the privilege).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_reconcile import Harness, commit

from conftest import edit
from llmops.engine import lockfile
from llmops.engine.actuate import hydrate
from llmops.engine.actuate.base import ActPlan, ActuatorError
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult
from llmops.engine.types import KubeObject, ResourceKey


def config_maps(count: int, value: str, size: int = 10) -> list[KubeObject]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"cm-{i}", "namespace": "ns"},
             "data": {"v": value, "pad": "x" * size}} for i in range(count)]


def leftovers(root: Path) -> list[str]:
    """Everything under ``root`` that is neither the link, its set, the set before it,
    nor the lock file."""
    keep = {"dev", ".dev.lock"}
    link = root / "dev"
    if link.is_symlink():
        keep.add(os.readlink(link))
    return sorted(p.name for p in root.iterdir() if p.name not in keep)


def publish(actuator: HydrateActuator, revision: str, objects: list[KubeObject]) -> None:
    desired = {ResourceKey.of(o): o for o in objects}
    actuator.observe("dev")
    actuator.act(ActPlan("dev", revision, desired, dict.fromkeys(desired, "configured")))


def assert_published(root: Path, revision: str, objects: list[KubeObject]) -> None:
    found = hydrate.read_set(root, "dev")
    assert found is not None
    assert found.revision == revision
    assert found.objects == {ResourceKey.of(o): o for o in objects}


def test_a_new_set_hashes_and_stats_only_the_objects_that_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    actuator = HydrateActuator(tmp_path)
    first = config_maps(20, "1")
    publish(actuator, "rev1", first)
    second = [*first[:19], config_maps(20, "2")[19]]
    actuator.observe("dev")  # read in full after the publish: every file stat'ed
    hashed: list[KubeObject] = []
    stamped: list[str] = []
    real_hash, real_stamp = hydrate.object_hash, hydrate._stamp
    monkeypatch.setattr(hydrate, "object_hash", lambda o: hashed.append(o) or real_hash(o))
    monkeypatch.setattr(hydrate, "_stamp", lambda p: stamped.append(str(p)) or real_stamp(p))
    desired = {ResourceKey.of(o): o for o in second}
    actuator.act(ActPlan("dev", "rev2", desired, {ResourceKey.of(second[19]): "configured"}))
    assert hashed == [second[19]]
    # Each previous file checked before it is linked, and the one file written: the
    # linked files are not stat'ed again after the publish.
    assert len(stamped) == 20 + 1
    monkeypatch.setattr(hydrate, "_stamp", real_stamp)
    assert_published(tmp_path, "rev2", second)
    index = json.loads(((tmp_path / "dev").resolve() / hydrate.INDEX).read_text())
    assert index["revision"] == "rev2"
    assert {e["name"]: e["hash"] for e in index["objects"]} == {
        o["metadata"]["name"]: real_hash(o) for o in second}
    assert actuator.observe("dev") == {ResourceKey.of(o): o for o in second}


def test_an_error_midway_leaves_no_staging_and_the_previous_set_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = config_maps(20, "1")
    hydrate.write_set(tmp_path, "dev", "rev1", first)
    before = os.readlink(tmp_path / "dev")
    calls: list[Path] = []
    real = hydrate._write_file

    def failing(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 5:
            raise RuntimeError("renderer bug")
        real(path, text)

    monkeypatch.setattr(hydrate, "_write_file", failing)
    with pytest.raises(RuntimeError, match="renderer bug"):
        hydrate.write_set(tmp_path, "dev", "rev2", config_maps(20, "2"))
    assert leftovers(tmp_path) == []
    assert os.readlink(tmp_path / "dev") == before
    assert_published(tmp_path, "rev1", first)


def test_a_stale_staging_dir_of_a_killed_publisher_is_removed_at_start(tmp_path: Path) -> None:
    hydrate.write_set(tmp_path, "dev", "rev1", config_maps(2, "1"))
    stale = tmp_path / ".dev.staging.k1ll3d"
    (stale / "ns").mkdir(parents=True)
    (stale / "ns" / "core_ConfigMap_cm-0.yaml").write_text("half: written\n")
    (tmp_path / ".dev.link.99999").symlink_to(".dev.staging.k1ll3d")
    other_env = tmp_path / ".prod.staging.busy"  # another environment's publisher: not ours
    other_env.mkdir()
    hydrate.write_set(tmp_path, "dev", "rev2", config_maps(2, "2"))
    assert not stale.exists()
    assert not (tmp_path / ".dev.link.99999").is_symlink()
    assert other_env.is_dir()
    assert_published(tmp_path, "rev2", config_maps(2, "2"))


def test_disk_full_keeps_the_previous_set_fails_the_pass_clearly_and_the_next_pass_publishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    actuator = HydrateActuator(tmp_path)
    first = config_maps(10, "1")
    publish(actuator, "rev1", first)
    before = os.readlink(tmp_path / "dev")
    real = hydrate._write_file
    written: list[Path] = []

    def disk_full(path: Path, text: str) -> None:
        written.append(path)
        if len(written) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)

    monkeypatch.setattr(hydrate, "_write_file", disk_full)
    second = config_maps(10, "2")
    with pytest.raises(ActuatorError) as caught:
        publish(actuator, "rev2", second)
    assert str(caught.value) == f"{tmp_path / 'dev'}: cannot publish: No space left on device"
    assert leftovers(tmp_path) == []
    assert_published(tmp_path, "rev1", first)
    assert actuator.observe("dev") == {ResourceKey.of(o): o for o in first}
    monkeypatch.setattr(hydrate, "_write_file", real)  # space again
    publish(actuator, "rev2", second)
    assert_published(tmp_path, "rev2", second)
    assert leftovers(tmp_path) == [before]  # the set before, kept for readers inside it


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted for the test, or a skip when this process may not mount."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=4096", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.slow  # mounts a filesystem
def test_a_real_full_disk_keeps_the_previous_set_and_the_next_pass_publishes(
        tiny_tmpfs: Path) -> None:
    actuator = HydrateActuator(tiny_tmpfs)
    small: list[dict[str, Any]] = config_maps(10, "1")
    publish(actuator, "rev1", small)
    too_big = config_maps(40, "2", size=16_000)  # ~640 KiB: more than the whole disk
    with pytest.raises(ActuatorError, match="cannot publish: No space left on device"):
        publish(actuator, "rev2", too_big)
    assert leftovers(tiny_tmpfs) == []
    assert_published(tiny_tmpfs, "rev1", small)
    fits = config_maps(10, "3", size=4_000)
    publish(actuator, "rev3", fits)
    assert_published(tiny_tmpfs, "rev3", fits)


def test_a_pass_on_a_full_disk_fails_with_the_reason_and_the_next_pass_publishes(
        store: Store, template_git_repo: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(store, template_git_repo, tmp_path)
    h.rec = h.make(environments=["dev"])
    assert h.run()["dev"].ok
    published = h.published("dev")
    real = hydrate._write_file

    def disk_full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(hydrate, "_write_file", disk_full)
    edit(template_git_repo, "endpoints/dev/support-chat.yaml", "memory: 24Gi", "memory: 20Gi")
    head = commit(template_git_repo, "dev: less memory")
    failed_pass = h.run()["dev"]
    assert failed_pass.result is RunResult.FAILED
    assert (failed_pass.reason, failed_pass.message) == (
        "ApplyFailed", f"{h.out / 'dev'}: cannot publish: No space left on device")
    assert h.published("dev") == published
    assert leftovers(h.out) == []
    monkeypatch.setattr(hydrate, "_write_file", real)
    next_pass = h.run()["dev"]
    assert next_pass.result is RunResult.SUCCEEDED
    assert h.published("dev").revision == head


def test_a_stopped_publisher_holding_the_lock_fails_the_publish_instead_of_hanging_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A publisher that was stopped (SIGSTOP, a leader that stalled past its lease) keeps
    its lock: the next one gives up after the wait, with the reason, and publishes once
    the lock is free again."""
    monkeypatch.setattr(lockfile, "WAIT_SECONDS", 0.2)
    root = tmp_path / "out"
    actuator = HydrateActuator(root)
    publish(actuator, "rev1", config_maps(2, "1"))
    stopped = os.open(root / ".dev.lock", os.O_RDWR)  # another open file: another process
    fcntl.flock(stopped, fcntl.LOCK_EX)
    try:
        with pytest.raises(ActuatorError, match="held by another process"):
            publish(actuator, "rev2", config_maps(2, "2"))
        assert_published(root, "rev1", config_maps(2, "1"))
    finally:
        os.close(stopped)
    publish(actuator, "rev2", config_maps(2, "2"))
    assert_published(root, "rev2", config_maps(2, "2"))


def test_a_symlink_planted_at_the_lock_path_is_refused_and_nothing_is_made_through_it(
        tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (root / ".dev.lock").symlink_to(elsewhere)
    with pytest.raises(ActuatorError, match="cannot publish"):
        publish(HydrateActuator(root), "rev1", config_maps(1, "1"))
    assert not elsewhere.exists(), "the lock file was created where the link points"
    assert hydrate.read_set(root, "dev") is None
