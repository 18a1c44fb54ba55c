"""What the leader's fencing token costs per store write (run by hand).

    .venv/bin/python bench/bench_fence.py [WRITES] [POSTGRES_ADMIN_URL]

Times WRITES write transactions (``state.put_environment_status``, one row each, as
the record stage writes them) without a fence and inside ``Store.fenced`` (each one
first reads the lease's epoch, ``FOR SHARE`` on PostgreSQL), on a SQLite file and on a
PostgreSQL database it creates and drops (default admin URL
``postgresql://postgres@127.0.0.1:5432/test``). The two kinds alternate in 5 rounds
so load on a shared machine hits both alike; prints the median per write of each.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from llmops.engine.store import db, state

ROUNDS = 5


def per_write(store: db.Store, writes: int, fence: db.Fence | None) -> float:
    status = state.EnvironmentStatus("dev")
    start = time.perf_counter()
    for i in range(writes):
        if fence is None:
            state.put_environment_status(store, replace(status, source_message=str(i)))
        else:
            with store.fenced(fence):
                state.put_environment_status(store, replace(status, source_message=str(i)))
    return (time.perf_counter() - start) / writes


def measure(label: str, url: str, writes: int) -> None:
    with db.Store(url) as store:
        store.migrate()
        fence = store.next_fence("bench")
        plain, fenced = [], []
        for _ in range(ROUNDS):
            plain.append(per_write(store, writes, None))
            fenced.append(per_write(store, writes, fence))
    a, b = statistics.median(plain), statistics.median(fenced)
    print(f"{label:<11} unfenced {a * 1e3:7.3f} ms/write   fenced {b * 1e3:7.3f} ms/write"
          f"   +{(b - a) * 1e3:.3f} ms ({b / a - 1:+.0%})")


def main() -> None:
    writes = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    admin_url = sys.argv[2] if len(sys.argv) > 2 else "postgresql://postgres@127.0.0.1:5432/test"
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", writes)
    name = f"llmops_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
        measure("postgresql", url.render_as_string(hide_password=False), writes)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
