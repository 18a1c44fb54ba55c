"""The routing table: the endpoint's prompt template and its experiment's variants, from files.

Input: the folder of the endpoint's prompt ConfigMap, as the ServingEndpoint
renderer writes it: the template's keys ``name``, ``version``, ``template``,
``variables`` (one file each) when the endpoint has a template, and
``experiment.json`` (the variant table of
``llmops.renderers.serving.experiment_table``) while an experiment routes its
traffic. Every part may be absent: no table means the template; no template
either means pass-through. The ConfigMap is always mounted, so an experiment or
a template that comes or goes is a file that appears or disappears, never a
changed pod. Output: an immutable ``RoutingTable``. ``TableSource`` keeps the
current table and reloads it when a file's identity (inode, mtime, size)
changes, which is how a mounted ConfigMap changes (kubelet swaps a symlink);
a request holds the table it started with, so a reload never disturbs one in
flight, and a bad file keeps the last good table (``refresh`` says why).
Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1 << 20
PROMPT_KEYS = ("name", "version", "template", "variables")
NO_VARIANT = "none"
"""The variant label of a request routed without any template (pure pass-through)."""


class TableError(ValueError):
    """A mounted file is missing, too large or malformed; the message names the file and field."""


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    text: str
    variables: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    template: Template
    weight: int

    @property
    def name(self) -> str:
        return self.template.name


@dataclass(frozen=True)
class Stickiness:
    header: str | None = None
    cookie: str | None = None


@dataclass(frozen=True)
class RoutingTable:
    """What the router does with a request: which variants, weighted how, sticky by what."""

    experiment: str | None
    state: str | None
    variants: tuple[Variant, ...]
    stickiness: Stickiness | None = None

    @property
    def label(self) -> str:
        """The ``experiment`` label of the metrics ("" without an experiment)."""
        return self.experiment or ""


@dataclass(frozen=True)
class TablePaths:
    prompt_dir: Path | None = None
    experiment_file: Path | None = None

    def files(self) -> list[Path]:
        found = [self.prompt_dir / key for key in PROMPT_KEYS] if self.prompt_dir else []
        return found + ([self.experiment_file] if self.experiment_file else [])


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TableError(f"{path}: {size} bytes, more than {MAX_FILE_BYTES}")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: cannot read: {exc}") from exc


def _variables(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TableError(f"{where}: must be a list of variable names")
    return tuple(value)


def load_prompt(folder: Path) -> Template | None:
    """The endpoint's default template from its mounted prompt ConfigMap; None when the
    ConfigMap holds no template (some of its keys but not all is an error)."""
    present = [key for key in PROMPT_KEYS if (folder / key).exists()]
    if not present:
        return None
    data = {key: _read(folder / key) for key in PROMPT_KEYS}
    try:
        names = json.loads(data["variables"])
    except ValueError as exc:
        raise TableError(f"{folder / 'variables'}: not JSON: {exc}") from exc
    variables = _variables(names, str(folder / "variables"))
    return Template(
        name=data["name"].strip(),
        version=data["version"].strip(),
        text=data["template"],
        variables=variables,
    )


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise TableError(f"{where}.{key}: must be a {kind.__name__}")
    return value


def _variant(item: Any, where: str) -> Variant:
    if not isinstance(item, dict):
        raise TableError(f"{where}: must be an object")
    weight = _field(item, "weight", int, where)
    if not 0 <= weight <= 100:
        raise TableError(f"{where}.weight: must be between 0 and 100, not {weight}")
    template = Template(
        name=_field(item, "template", str, where),
        version=str(item.get("version", "")),
        text=_field(item, "text", str, where),
        variables=_variables(item.get("variables", []), f"{where}.variables"),
    )
    return Variant(template=template, weight=weight)


def _stickiness(value: Any, where: str) -> Stickiness | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or not (isinstance(value.get("header"), str) or isinstance(value.get("cookie"), str))
    ):
        raise TableError(f"{where}.stickiness: must be {{header: name}} or {{cookie: name}}")
    return Stickiness(header=value.get("header"), cookie=value.get("cookie"))


def parse_experiment(text: str, where: str) -> RoutingTable:
    """An experiment's variant table; a concluded one sends all traffic to its winner."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TableError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("variants"), list):
        raise TableError(f"{where}: must be an object with a list of variants")
    variants = [_variant(v, f"{where}: variants[{i}]") for i, v in enumerate(doc["variants"])]
    state, winner = doc.get("state"), doc.get("winner")
    if state == "concluded":
        if winner not in {v.name for v in variants}:
            raise TableError(f"{where}: winner: {winner!r} is not one of the variants")
        variants = [Variant(v.template, 100 if v.name == winner else 0) for v in variants]
    if not variants or sum(v.weight for v in variants) <= 0:
        raise TableError(f"{where}: variants: no variant has a weight above 0")
    return RoutingTable(
        experiment=_field(doc, "experiment", str, where),
        state=str(state),
        variants=tuple(variants),
        stickiness=_stickiness(doc.get("stickiness"), where),
    )


def load(paths: TablePaths) -> RoutingTable:
    """The table the mounted files describe: the experiment, else the template, else nothing
    (a file that is not there is not part of it)."""
    if paths.experiment_file is not None and paths.experiment_file.exists():
        return parse_experiment(_read(paths.experiment_file), str(paths.experiment_file))
    template = load_prompt(paths.prompt_dir) if paths.prompt_dir is not None else None
    if template is not None:
        return RoutingTable(experiment=None, state=None, variants=(Variant(template, 100),))
    return RoutingTable(experiment=None, state=None, variants=())


Signature = tuple[tuple[int, int, int] | None, ...]


def signature(paths: TablePaths) -> Signature:
    """The identity of every file read: a changed one means a changed ConfigMap."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths.files():
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class TableSource:
    """The current table; ``refresh`` swaps in a new one when the files changed."""

    def __init__(self, paths: TablePaths) -> None:
        self.paths = paths
        self._signature = signature(paths)
        self.current = load(paths)

    def refresh(self) -> bool | TableError:
        """True when a new table was loaded, False when nothing changed, the error otherwise.

        On an error the previous table stays in force; the same broken files
        are not reported again until they change.
        """
        seen = signature(self.paths)
        if seen == self._signature:
            return False
        self._signature = seen
        try:
            self.current = load(self.paths)
        except TableError as exc:
            return exc
        return True
