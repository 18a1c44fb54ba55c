"""Benchmark of reconcile passes with the hydrate actuator (run by hand).

    .venv/bin/python bench/bench_reconcile.py [ENDPOINTS]

Builds a git specs repo of ENDPOINTS serving endpoints (default 2000, with
``bench/synth.py``), then times with a SQLite store: the first pass (every
object published), a resync of the same revision (should do close to no work),
and a pass after the repo's last commit, which changes one endpoint.
``BENCH_PROFILE=<part of a pass label>`` (e.g. ``resync``) prints a pyinstrument
profile of the passes whose label contains it to stderr. Each line also says how long
the pass spent in Python's cyclic garbage collector, and in how many full collections;
the collector runs with the thresholds every ``llmops`` command sets (``GC_THRESHOLD``).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synth import generate

from llmops.cli import GC_THRESHOLD
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import reconciler
from llmops.engine.source import snapshots
from llmops.engine.store.db import Store


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "core.hooksPath=/dev/null", "-c",
                    "user.name=bench", "-c", "user.email=bench@localhost", *args],
                   check=True, capture_output=True)


def _profiler() -> Any:
    """A running pyinstrument profiler (BENCH_PROFILE=<part of a pass label>)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    return profiler


class GcTimer:
    """Wall time spent in the cyclic garbage collector, and its full collections."""

    def __init__(self) -> None:
        self.seconds, self.full, self._start = 0.0, 0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.full += info["generation"] == 2

    def reset(self) -> None:
        self.seconds, self.full = 0.0, 0


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    gc.set_threshold(*GC_THRESHOLD)  # as in the daemon: every llmops command sets it
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = generate(root / "specs", count)
        # Follow the commit before the last; the last (one endpoint changed) comes later.
        git(repo, "branch", "-q", "change", "HEAD")
        git(repo, "reset", "-q", "--hard", "HEAD~1")
        store = Store(f"sqlite:///{root / 'llmops.db'}")
        store.migrate()
        published = HydrateActuator(root / "out")
        rec = reconciler.Reconciler(
            store, snapshots.open_source(str(repo), "main", root / "work"),
            lambda env, cfg: published,
            clock=lambda: datetime(2026, 11, 25, 9, tzinfo=UTC))

        profile = os.environ.get("BENCH_PROFILE", "")
        collector = GcTimer()

        def timed(label: str) -> None:
            profiler = _profiler() if profile and profile in label else None
            collector.reset()
            start, cpu = time.perf_counter(), time.process_time()
            results = rec.run_once()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            if profiler is not None:
                profiler.stop()
                sys.stderr.write(profiler.output_text(show_all=False))
            summary = ", ".join(f"{r.environment} {r.result.value}" for r in results)
            print(f"{label:<40} {elapsed * 1000:8.0f} ms wall {cpu * 1000:8.0f} ms CPU "
                  f"{collector.seconds * 1000:6.0f} ms GC ({collector.full} full)   "
                  f"({summary})")

        print(f"repo: {count} endpoints, {sum(1 for _ in repo.rglob('*.yaml'))} files")
        timed("first pass (publish everything)")
        timed("resync, same revision")
        git(repo, "merge", "-q", "--ff-only", "change")
        timed("one endpoint changed")
        timed("resync, same revision")
        timed("resync again (steady state)")


if __name__ == "__main__":
    main()
