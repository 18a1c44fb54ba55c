"""What keeps the parallel run (``pytest -n N``, as ``.ci/run`` runs the suite) from
sharing state between workers: each worker's own Redis database."""

from __future__ import annotations

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

