"""What anchoring the audit chain in the specs repo costs: one write, and verify's read.

Writes ``--anchors`` anchors to ``refs/llmops/audit-anchors`` of a bare repo reached
by a file:// URL (through write-back's mirror, as for a real remote: fetch, commit,
push per anchor), then reads them all back as ``llmops audit verify`` does (fetch,
rev-list, one ``cat-file --batch``, MAC check). Prints the median seconds per write
and the seconds of the read.

    .venv/bin/python bench/bench_anchors.py --anchors 200
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from llmops.engine.run import anchoring
from llmops.engine.source import anchorref, push, writeback
from llmops.engine.store import seal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--anchors", type=int, default=200)
    args = parser.parse_args()
    keys = seal.Keyring(seal.AuditKey(bytes(range(32))))
    with tempfile.TemporaryDirectory(prefix="bench-anchors-") as tmp:
        bare = Path(tmp) / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        repo = writeback.local_repo(bare.as_uri(), home=Path(tmp) / "home")
        assert isinstance(repo, push.Mirror)
        writes = []
        for entry in range(1, args.anchors + 1):
            started = time.perf_counter()
            anchorref.append(repo, anchoring.message(keys.sign(entry, "ab" * 32)))
            writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        _source, items = anchoring.RepoAnchors(repo, interval=1).read(keys)
        read = time.perf_counter() - started
    assert len(items) == args.anchors
    assert all(isinstance(i, seal.Anchor) for i in items)
    print(f"write: median {statistics.median(writes) * 1000:.0f} ms per anchor "
          f"(max {max(writes) * 1000:.0f} ms); read of {args.anchors}: {read * 1000:.0f} ms")


if __name__ == "__main__":
    main()
