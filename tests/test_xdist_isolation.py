"""What keeps the parallel run (``pytest -n N --dist loadgroup``, as ``.ci/run`` runs the
suite) from sharing state between workers: each worker's own Redis database, and the
real-server tier kept together on one worker (one control plane per run)."""

from __future__ import annotations

from typing import Any

import pytest

import conftest


def test_each_xdist_worker_gets_its_own_redis_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_TEST_REDIS_URL", "redis://:pw@127.0.0.1:6390/0")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert conftest.worker_redis_url() == "redis://:pw@127.0.0.1:6390/0"
    urls = set()
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        urls.add(conftest.worker_redis_url())
    assert urls == {f"redis://:pw@127.0.0.1:6390/{db}" for db in (1, 2, 3)}
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw15")
    assert conftest.worker_redis_url().endswith("/1"), "Redis has databases 0-15 only"


class _Item:
    """The part of a collected ``pytest.Item`` that the collection hook reads and writes."""

    def __init__(self, *fixturenames: str, marks: tuple[pytest.MarkDecorator, ...] = ()) -> None:
        self.fixturenames = fixturenames
        self.marks = [m.mark for m in marks]

    def get_closest_marker(self, name: str) -> Any:
        return next((m for m in self.marks if m.name == name), None)

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.marks.append(marker.mark)

    def group(self) -> object:
        found = self.get_closest_marker("xdist_group")
        return found.args[0] if found else None


def test_every_real_kube_test_lands_in_one_xdist_group() -> None:
    by_fixture = _Item("tmp_path", "kube_namespace")
    by_mark = _Item("tmp_path", marks=(pytest.mark.realkube,))
    other = _Item("tmp_path", "postgres_url")
    conftest.pytest_collection_modifyitems([by_fixture, by_mark, other])  # type: ignore[list-item]
    assert by_fixture.group() == by_mark.group() == conftest.REAL_KUBE_GROUP
    assert other.group() is None
    assert by_fixture.get_closest_marker("slow") is not None
