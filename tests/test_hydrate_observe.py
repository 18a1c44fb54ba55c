"""Observing a published set: read again only when it may have changed, never miss an edit.

After a full read, the hydrate actuator hands out the same objects without touching a
file while an inotify watch on the set saw nothing; an edit in place, a file renamed
into the set, a set swapped in by another publisher, the sweep interval and a machine
without inotify all bring a full read back, and the edit is seen by the very next
observe (the watch is drained synchronously, not on a thread).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmops.engine.actuate import dirwatch, hydrate
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.types import KubeObject, ResourceKey


def config_maps(value: str) -> list[KubeObject]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"cm-{i}", "namespace": f"ns-{i % 2}"},
             "data": {"v": value}} for i in range(4)]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The published files ``read_set`` looked at (stat'ed), in order."""
    seen: list[str] = []
    real = hydrate._stamp

    def counting(path: Path) -> hydrate.FileStamp:
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(hydrate, "_stamp", counting)
    return seen


def published_file(root: Path, obj: KubeObject) -> Path:
    return (root / "dev").resolve() / hydrate.file_name(ResourceKey.of(obj))


def test_an_unchanged_set_is_handed_out_again_without_reading_a_file(
        tmp_path: Path, reads: list[str]) -> None:
    objects = config_maps("1")
    hydrate.write_set(tmp_path, "dev", "rev1", objects)
    actuator = HydrateActuator(tmp_path)
    first = actuator.observe("dev")
    assert len(reads) == 4
    reads.clear()
    again = actuator.observe("dev")
    assert reads == []
    assert again is first  # the very same read-only mapping: a resync compares nothing
    assert again == {ResourceKey.of(o): o for o in objects}
    with pytest.raises(TypeError):
        again[ResourceKey.of(objects[0])] = {}  # type: ignore[index]


def test_an_edit_in_place_is_seen_by_the_next_observe(tmp_path: Path) -> None:
    objects = config_maps("1")
    hydrate.write_set(tmp_path, "dev", "rev1", objects)
    actuator = HydrateActuator(tmp_path)
    actuator.observe("dev")
    actuator.observe("dev")
    path = published_file(tmp_path, objects[3])  # in the second namespace's folder
    path.write_text(path.read_text().replace("v: '1'", "v: '9'"))
    edited = actuator.observe("dev")[ResourceKey.of(objects[3])]
    assert edited["data"] == {"v": "9"}


def test_a_file_renamed_over_a_published_one_is_seen(tmp_path: Path) -> None:
    objects = config_maps("1")
    hydrate.write_set(tmp_path, "dev", "rev1", objects)
    actuator = HydrateActuator(tmp_path)
    actuator.observe("dev")
    path = published_file(tmp_path, objects[0])
    other = tmp_path / "elsewhere.yaml"
    other.write_text(path.read_text().replace("v: '1'", "v: '7'"))
    os.replace(other, path)
    assert actuator.observe("dev")[ResourceKey.of(objects[0])]["data"] == {"v": "7"}


def test_a_set_published_by_someone_else_is_read(tmp_path: Path, reads: list[str]) -> None:
    hydrate.write_set(tmp_path, "dev", "rev1", config_maps("1"))
    actuator = HydrateActuator(tmp_path)
    actuator.observe("dev")
    hydrate.write_set(tmp_path, "dev", "rev2", config_maps("2"))  # another process, say
    reads.clear()
    observed = actuator.observe("dev")
    assert len(reads) == 4
    assert {o["data"]["v"] for o in observed.values()} == {"2"}


def test_the_sweep_interval_and_a_machine_without_inotify_read_in_full(
        tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    hydrate.write_set(tmp_path, "dev", "rev1", config_maps("1"))
    swept = HydrateActuator(tmp_path, sweep_seconds=0)
    swept.observe("dev")
    reads.clear()
    swept.observe("dev")
    assert len(reads) == 4
    monkeypatch.setattr(dirwatch, "_LIBC", None)
    unwatched = HydrateActuator(tmp_path)
    unwatched.observe("dev")
    reads.clear()
    unwatched.observe("dev")
    assert len(reads) == 4


def test_nothing_published_yet_is_an_empty_set_every_time(tmp_path: Path) -> None:
    actuator = HydrateActuator(tmp_path)
    assert actuator.observe("dev") == {}
    hydrate.write_set(tmp_path, "dev", "rev1", config_maps("1"))
    assert len(actuator.observe("dev")) == 4
