"""Benchmark of the local pipeline stages on a generated specs repo (run by hand).

    .venv/bin/python bench/bench_pipeline.py [ENDPOINTS]

Generates a repo of ENDPOINTS serving endpoints (default 2000) with
``bench/synth.py`` (models, adapters, templates, experiments, training jobs,
a policy, in fixed proportions), then times: a cold load (parse every file), a
warm load (every file served from the blob-SHA cache), validation, rendering one
environment, and the 300-byte billion-laughs file. Prints one line per figure.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from synth import generate

from llmops.engine.errors import SpecError
from llmops.engine.spec import loader, validate
from llmops.renderers import render_environment

BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n"
              for p, c in zip("abcdef", "bcdefg", strict=True))
)


def timed(label: str, fn, n: int = 1):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = None
    for _ in range(n):
        result = fn()
    elapsed = (time.perf_counter() - start) / n
    print(f"{label:<44} {elapsed * 1000:10.2f} ms")
    return result


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "specs", count)
        files = sum(1 for _ in root.rglob("*.yaml"))
        print(f"repo: {count} endpoints, {files} files")
        cache = loader.ParseCache()
        loaded = timed("load, cold (parse every file)", lambda: loader.load_repo(root,
                                                                                  cache=cache))
        per_file = 0.0
        timed("load, warm (blob-SHA cache hits)", lambda: loader.load_repo(root, cache=cache))
        spec_set = timed("validate (models + cross-references)",
                         lambda: validate.validate(loaded))
        objects = timed("render prod", lambda: render_environment(spec_set, "prod"))
        print(f"{'objects rendered in prod':<44} {len(objects):10d}")
        start = time.perf_counter()
        loader.load_repo(root, cache=loader.ParseCache())
        per_file = (time.perf_counter() - start) / files
        print(f"{'cold load per file':<44} {per_file * 1000:10.3f} ms")

        def bomb() -> None:
            try:
                loader.load_bytes(BOMB.encode(), "bomb.yaml", cache=None)
            except SpecError:
                return
            raise AssertionError("the bomb loaded")

        timed(f"billion laughs ({len(BOMB)} bytes) rejected", bomb, n=100)


if __name__ == "__main__":
    main()
