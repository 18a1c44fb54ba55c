"""CPU per request of the REST API's three reads, in process (run by hand).

    .venv/bin/python bench/bench_api_cpu.py [REQUESTS] [ROUNDS] [--profile]

The figure to compare before and after a change on a shared machine: the app
is driven through httpx's ASGI transport, one request at a time, and the
process's CPU time (user + system, every thread: the client's share
included) is divided by the requests, so the neighbours' load changes the
wall time but hardly the figure. Store: the PostgreSQL fill of
``bench_api.py`` (10,000 endpoints, 40,000 objects, 1,000,000 audit rows) in
a database of its own (``llmops_bench_api_cpu``), filled on the first run and
kept for the next (``BENCH_DROP=1`` drops it at the end). Queries: the three
of ``bench_api.py``, with random filters from a fixed seed, REQUESTS of each
(default 300) after 50 to warm up, ROUNDS times (default 3); prints the
median, the least (what the neighbours inflate least) and every round's CPU ms per
request. ``--profile`` runs pyinstrument
over one round instead, with the routes' thread-pool hops run inline (so
the profiler sees them), and writes ``api-profile-<query>.txt`` to the
working directory.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_api  # noqa: E402

from llmops.api import tokens  # noqa: E402
from llmops.api.app import create_app  # noqa: E402
from llmops.engine import settings  # noqa: E402
from llmops.engine.store import db  # noqa: E402

DATABASE = "llmops_bench_api_cpu"
WARM_UP = 50


def _query(kind: str, rng: random.Random) -> str:
    if kind == "list":
        return (f"/serving/endpoints?environment={rng.choice(bench_api.ENVS)}"
                f"&status={rng.choice(('healthy', 'degraded', 'progressing'))}"
                f"&modelId=model-{rng.randrange(bench_api.MODELS)}&limit=20")
    if kind == "detail":
        return f"/serving/endpoints/endpoint-{rng.randrange(bench_api.ENDPOINTS)}"
    actor = quote(f"user-{rng.randrange(50)}@example.com")
    return f"/governance/audit/logs?actor={actor}&limit=50"


def _database() -> str:
    """The filled database's URL (filled here when it does not exist yet)."""
    admin_url = bench_api.ADMIN_URL
    with psycopg.connect(admin_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               (DATABASE,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{DATABASE}"
    if not exists:
        started = time.monotonic()
        bench_api.fill(url)
        print(f"filled in {time.monotonic() - started:.0f} s", flush=True)
    return url


def _drop() -> None:
    with psycopg.connect(bench_api.ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


async def _drive(client: httpx.AsyncClient, paths: list[str]) -> None:
    for path in paths:
        response = await client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")


def _inline_threads() -> None:
    """Run FastAPI's thread-pool hops inline, so the profiler sees the routes' work."""
    import anyio.to_thread

    async def run_sync(func: Any, *args: Any, **_kwargs: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]


async def main() -> None:
    argv = [a for a in sys.argv[1:] if not a.startswith("--")]
    profile = "--profile" in sys.argv
    requests = int(argv[0]) if argv else 300
    rounds = 1 if profile else int(argv[1]) if len(argv) > 1 else 3
    url = _database()
    os.environ["LLMOPS_API__JWT_SECRET"] = bench_api.SECRET
    token = tokens.encode({"sub": "bench", "roles": ["admin"],
                           "exp": int(time.time()) + 3600}, bench_api.SECRET)
    rng = random.Random(12)
    with db.Store(url) as store:
        app = create_app(store, settings=settings.load())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench/llm-ops/v1",
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            for kind in ("list", "detail", "audit"):
                await _drive(client, [_query(kind, rng) for _ in range(WARM_UP)])
                if profile:
                    from pyinstrument import Profiler
                    _inline_threads()
                    paths = [_query(kind, rng) for _ in range(requests)]
                    with Profiler(async_mode="enabled") as profiler:
                        await _drive(client, paths)
                    Path(f"api-profile-{kind}.txt").write_text(
                        profiler.output_text(show_all=False), encoding="utf-8")
                    print(f"{kind}: api-profile-{kind}.txt")
                    continue
                per: list[float] = []
                for _ in range(rounds):
                    paths = [_query(kind, rng) for _ in range(requests)]
                    cpu = time.process_time()
                    await _drive(client, paths)
                    per.append((time.process_time() - cpu) * 1000 / requests)
                print(f"{kind:7} CPU ms/request: median {statistics.median(per):.2f}, "
                      f"least {min(per):.2f} "
                      f"(rounds {', '.join(f'{p:.2f}' for p in per)}); "
                      f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if os.environ.get("BENCH_DROP"):
        _drop()


if __name__ == "__main__":
    asyncio.run(main())
