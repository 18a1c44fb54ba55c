"""The ``hydrate`` actuator's storage: rendered manifests per environment, swapped atomically.

Input: an environment's complete set of objects. Output: a directory
``<root>/<env>/`` holding one YAML file per object and ``index.json`` (every
object's key, file and content hash, plus the source revision). Called by the
reconciler's hydrate actuator, and by ``llmops render --out``-style tools.

Atomicity: a set is written into a fresh hidden directory
``<root>/.<env>.<revision>.<random>/`` and published by replacing the symlink
``<root>/<env>`` in one ``rename`` (the way Kubernetes updates a projected
volume). A reader that opens ``<root>/<env>/...`` sees the old set or the new
one, never a mix or a half-written file. Older set directories are removed
after the swap, keeping the previous one for readers still inside it.

Failures: one publisher per environment at a time (an ``flock`` on
``<root>/.<env>.lock``, a regular file, waited for within a bound). A publish
that fails midway (no space left, an unreadable file) removes its staging
directory before the error goes up, and the previous set stays published and
readable; what a killed publisher left behind (staging directories, a
temporary link) is removed by the next one to take the lock. The actuator
reports the failure as ``ActuatorError`` naming the directory and the reason,
so the pass fails and the next one publishes afresh.

Observing: the actuator reads a set in full (every file stat'ed, a file parsed
again only when its inode, size or mtime changed) after each publish, at least
every ``SWEEP_SECONDS``, and whenever an inotify watch on the set
(``actuate.dirwatch``) saw anything change in it, so a hand edit is seen by the
next pass; otherwise it hands out the objects it read last, at no I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from llmops.engine import lockfile
from llmops.engine.actuate.base import ActPlan, ActResult, ActuatorError, ObjectOutcome, Outcome
from llmops.engine.actuate.dirwatch import DirWatch
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.types import KubeObject, ResourceKey, canonical_json

INDEX = "index.json"
KEY_ORDER = ("apiVersion", "kind", "metadata")
SWEEP_SECONDS = 300.0
"""Read a watched, unchanged set in full again at least this often all the same."""


def ordered(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object with apiVersion, kind and metadata first, the rest sorted."""
    head = {k: obj[k] for k in KEY_ORDER if k in obj}
    return head | {k: obj[k] for k in sorted(obj) if k not in head}


def to_yaml(obj: Mapping[str, Any]) -> str:
    return yaml.dump(ordered(obj), Dumper=yaml.CSafeDumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True, width=1000)


def file_name(key: ResourceKey) -> str:
    """``<namespace or _cluster>/<group>_<kind>_<name>.yaml``, stable and collision-free."""
    group = key.group.replace("/", "_") or "core"
    return f"{key.namespace or '_cluster'}/{group}_{key.kind}_{key.name}.yaml"


def object_hash(obj: KubeObject) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


@dataclass(frozen=True, slots=True)
class HydratedSet:
    """What is published for one environment."""

    revision: str
    objects: dict[ResourceKey, KubeObject]


FileStamp = tuple[str, int, int, int]
"""A published file as ``read_set`` caches it: path, inode, size and mtime."""


def _stamp(path: Path | str) -> FileStamp:
    info = os.stat(path)
    return (str(path), info.st_ino, info.st_size, info.st_mtime_ns)


def write_set(root: Path, env: str, revision: str, objects: Iterable[KubeObject],
              written: dict[FileStamp, KubeObject] | None = None) -> Path:
    """Publish ``objects`` as the environment's set; returns the published directory.

    ``written`` (a ``read_set`` cache) is filled with the files just written, so the
    next ``read_set`` does not parse them again. Holds the environment's publish lock
    (``_publishing``); on any failure (a full disk, say) everything this call made is
    removed and the previous set stays published, untouched."""
    items = sorted(((ResourceKey.of(o), o) for o in objects), key=lambda kv: kv[0])
    root.mkdir(parents=True, exist_ok=True)
    link = root / env
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a llmops-managed symlink")
    with _publishing(root, env):
        published = _published_files(link) if written else {}
        staging = Path(tempfile.mkdtemp(prefix=f".{env}.staging.", dir=root))
        final = root / f".{env}.{revision[:12]}.{staging.name.rsplit('.', 1)[-1]}"
        try:
            files = _fill(staging, items, revision, published, written or {})
            os.rename(staging, final)
            previous = _swap(root, env, final)
        except BaseException:
            for made in (staging, final):
                shutil.rmtree(made, ignore_errors=True)
            raise
        _cleanup(root, env, keep={final.name, previous or ""})
    if written is not None:
        written.clear()
        base = str(final.resolve())
        for (_, obj), (rel, linked) in zip(items, files, strict=True):
            # A linked file is the previous one (same inode, size and mtime): not stat'ed.
            path = f"{base}/{rel}"
            written[(path, *linked[1:]) if linked else _stamp(path)] = obj
    return link


@contextlib.contextmanager
def _publishing(root: Path, env: str) -> Iterator[None]:
    """One publisher per environment (an ``flock`` on ``<root>/.<env>.lock``, across
    processes, waited for at most ``lockfile.WAIT_SECONDS``: a stopped publisher fails
    this publish, ``LockTimeout``, never hangs it). Whoever holds it first removes what a
    killed publisher left behind: staging directories and temporary links are only ever
    made under the lock, so any found by its holder belong to a publisher that no
    longer runs."""
    with lockfile.held(root / f".{env}.lock", mode=0o644):
        for entry in root.iterdir():
            if entry.name.startswith(f".{env}.link."):
                entry.unlink(missing_ok=True)
            elif (entry.name.startswith(f".{env}.staging.") and entry.is_dir()
                  and not entry.is_symlink()):
                shutil.rmtree(entry, ignore_errors=True)
        yield


def _write_file(path: Path, text: str) -> None:
    """Write one file of a set being staged (the only place a set's bytes are written)."""
    path.write_text(text, encoding="utf-8")


def _fill(staging: Path, items: Sequence[tuple[ResourceKey, KubeObject]], revision: str,
          published: Mapping[str, tuple[str, str]], parsed: Mapping[FileStamp, KubeObject]
          ) -> list[tuple[str, FileStamp | None]]:
    """Write every object and ``index.json`` into ``staging``; per object its file name
    and, when it was linked from the previous set, that file's stamp. A linked file keeps
    its index hash (its object is the one hashed then): only written objects are hashed."""
    staging.chmod(0o755)
    base = str(staging)
    folders: set[str] = set()
    entries, files = [], []
    for key, obj in items:
        rel = file_name(key)
        folder = rel.rpartition("/")[0]
        if folder not in folders:
            os.makedirs(f"{base}/{folder}", exist_ok=True)
            folders.add(folder)
        path = f"{base}/{rel}"
        previous = published.get(rel)
        linked = _link_unchanged(previous[0], obj, parsed, path) if previous else None
        if linked is None:
            _write_file(Path(path), to_yaml(obj))
        entry = {"group": key.group, "kind": key.kind, "namespace": key.namespace,
                 "name": key.name, "file": rel,
                 "hash": previous[1] if linked and previous else object_hash(obj)}
        # One entry a line, each by the C encoder (``indent`` would use the Python one).
        entries.append(json.dumps(entry))
        files.append((rel, linked))
    _write_file(staging / INDEX, f'{{"revision": {json.dumps(revision)}, "objects": [\n'
                + ",\n".join(entries) + "\n]}\n")
    return files


def _swap(root: Path, env: str, final: Path) -> str | None:
    """Point ``<root>/<env>`` at ``final`` in one rename; the set it pointed at before."""
    link = root / env
    tmp_link = root / f".{env}.link.{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    os.symlink(final.name, tmp_link)
    previous = os.readlink(link) if link.is_symlink() else None
    try:
        os.replace(tmp_link, link)
    except BaseException:
        tmp_link.unlink(missing_ok=True)
        raise
    return previous


def _published_files(link: Path) -> dict[str, tuple[str, str]]:
    """The files of the set published at ``link``: file name -> (path, index hash)."""
    try:
        base = str(link.resolve(strict=True))
        index = json.loads(Path(base, INDEX).read_text(encoding="utf-8"))
        return {e["file"]: (f"{base}/{e['file']}", str(e["hash"])) for e in index["objects"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # nothing published yet, or unreadable: every file is written anew


def _link_unchanged(previous: str, obj: KubeObject, parsed: Mapping[FileStamp, KubeObject],
                    path: str) -> FileStamp | None:
    """Hard-link the previous set's file when it holds exactly ``obj`` (no rewrite); its
    stamp, or None when it was not linked.

    Only a file whose path, inode, size and mtime are those ``read_set`` last parsed,
    and whose parsed content equals ``obj``, is linked: a hand edit is rewritten."""
    try:
        stamp = _stamp(previous)
        if parsed.get(stamp) != obj:
            return None
        os.link(previous, path)
    except OSError:
        return None
    return stamp


def _cleanup(root: Path, env: str, keep: set[str]) -> None:
    for entry in root.iterdir():
        if (entry.name.startswith(f".{env}.") and entry.name not in keep
                and entry.is_dir() and not entry.is_symlink()):
            shutil.rmtree(entry, ignore_errors=True)


def read_set(root: Path, env: str,
             cache: dict[FileStamp, KubeObject] | None = None) -> HydratedSet | None:
    """The published set of ``env``, or None when nothing was published yet.

    With ``cache``, a file whose path, inode, size and mtime did not change is not
    parsed again (an edit by hand changes them, so it is still seen). The cache
    keeps only the files of the set just read.
    """
    link = root / env
    if not link.exists():
        return None
    base = link.resolve()
    index = json.loads((base / INDEX).read_text(encoding="utf-8"))
    objects: dict[ResourceKey, KubeObject] = {}
    parsed: dict[FileStamp, KubeObject] = {}
    for entry in index["objects"]:
        key = ResourceKey(entry["group"], entry["kind"], entry["namespace"], entry["name"])
        path = base / entry["file"]
        stamp = _stamp(path)
        found = cache.get(stamp) if cache is not None else None
        if found is None:
            # libyaml's C loader: these are our own files; the pure-Python one is ~10x slower.
            found = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        objects[key] = parsed[stamp] = found
    if cache is not None:
        cache.clear()
        cache.update(parsed)
    return HydratedSet(revision=str(index["revision"]), objects=objects)


@dataclass(slots=True)
class _Seen:
    """An environment's set as last read in full, and the watch armed before that read.

    A later pass may reuse ``objects`` while the link still points at ``target``,
    nothing under it changed (``watch``) and the last full read is younger than the
    sweep interval. Without a watch (no inotify here) every pass reads in full."""

    target: str
    watch: DirWatch | None
    objects: Mapping[ResourceKey, KubeObject]
    """Read-only and handed out as it is: an unchanged set is the very same mapping."""
    read_at: float

    def still(self, target: str, sweep_seconds: float) -> bool:
        return (self.watch is not None and target == self.target
                and time.monotonic() - self.read_at < sweep_seconds
                and not self.watch.changed())


class HydrateActuator:
    """Publishes rendered manifests per environment under ``root``, atomically."""

    name = "hydrate"
    applies = True

    def __init__(self, root: Path, *, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self.root = root
        self.sweep_seconds = sweep_seconds
        self._parsed: dict[str, dict[FileStamp, KubeObject]] = {}
        self._seen: dict[str, _Seen] = {}

    def observe(self, environment: str) -> Mapping[ResourceKey, KubeObject]:
        """The published set; read again only when it may have changed (see ``_Seen``)."""
        link = self.root / environment
        try:
            target = os.readlink(link) if link.is_symlink() else ""
            seen = self._seen.get(environment)
            if seen is not None and seen.still(target, self.sweep_seconds):
                return seen.objects
            if seen is not None and seen.watch is not None:
                seen.watch.close()
            # Armed before the read: an edit made during it shows up on the next pass.
            watch = DirWatch.arm(link.resolve()) if target else None
            published = read_set(self.root, environment,
                                 self._parsed.setdefault(environment, {}))
        except (OSError, ValueError, KeyError) as exc:
            raise ActuatorError(f"{self.root / environment}: cannot read the published "
                                f"set: {exc}") from exc
        objects = MappingProxyType(dict(published.objects) if published else {})
        self._seen[environment] = _Seen(target, watch, objects, time.monotonic())
        return objects

    def act(self, plan: ActPlan) -> ActResult:
        objects = {**plan.keep, **plan.desired}
        try:
            write_set(self.root, plan.environment, plan.revision, objects.values(),
                      self._parsed.setdefault(plan.environment, {}))
        except OSError as exc:
            raise ActuatorError(f"{self.root / plan.environment}: cannot publish: "
                                f"{exc.strerror or exc}") from exc
        message = "published; applied downstream; health not observed (hydrate actuator)"
        outcomes = {key: ObjectOutcome(Outcome(action), message, HealthStatus.NOT_OBSERVED)
                    for key, action in plan.write.items()}
        outcomes |= {key: ObjectOutcome(Outcome.DELETED, "removed from the published set")
                     for key in plan.delete}
        return ActResult(outcomes)
