"""Whole-process measurements for the peer benchmarks: wall time and peak RSS.

``run`` starts one command and waits for it with ``os.wait4``, which returns
that child's own resource usage (``ru_maxrss``: the peak resident set of the
child, or of the largest of its own waited-for children), so every sample has
its own peak rather than the running maximum of ``RUSAGE_CHILDREN``.
``median`` repeats a measurement (default 3 runs) and keeps the median wall
time and the largest peak. A command that fails stops the benchmark with its
stderr: a timing of a failed run would be a wrong figure.

Callers: ``bench_render.py``, ``bench_apply.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_mb: float
    stderr: str = ""


class CommandFailed(RuntimeError):
    """A measured command exited non-zero; the message holds its command and stderr."""


def run(command: Sequence[str | Path], *, cwd: Path | None = None,
        env: dict[str, str] | None = None, stdout: Path | None = None) -> Sample:
    """Run ``command`` to completion (stdout to the file ``stdout`` or discarded)."""
    args = [str(a) for a in command]
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()  # to EOF: the child has closed it, so it is ending
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
    finally:
        if stdout:
            out.close()  # type: ignore[union-attr]
    text = err.decode(errors="replace")
    if proc.returncode != 0:
        raise CommandFailed(f"{' '.join(args)} exited {proc.returncode}: {text[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024, text)


def median(measure: Callable[[], Sample], runs: int = 3) -> Sample:
    """The median wall time and the largest peak RSS of ``runs`` runs of ``measure``."""
    samples = [measure() for _ in range(runs)]
    return Sample(statistics.median(s.seconds for s in samples),
                  max(s.peak_mb for s in samples), samples[-1].stderr)


def chain(samples: Sequence[Sample]) -> Sample:
    """Processes run one after another as one step: summed time, largest peak."""
    return Sample(sum(s.seconds for s in samples), max(s.peak_mb for s in samples))
