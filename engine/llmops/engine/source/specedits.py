"""Spec edits for write-back: old file text -> new text, one field change at a time.

Role: the ``Edit`` functions ``writeback.commit_edit`` applies to a spec file
read from the tracked branch: ruamel.yaml round-trip mode, so comments,
quoting and layout are kept and only the changed fields differ. Each edit
finds the matching document (kind, name, a model's version) and refuses
what it cannot do with ``writeback``'s errors (``TargetMissing`` when the
spec left the file, ``EditRejected`` for an invalid edit, ``FileListed`` for
a model file already recorded). Input: the spec's identity and the change.
Output: an ``Edit``. Callers: the write use cases
(``llmops.engine.service.writes``, ``creates``, ``uploads``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from llmops.engine.source.writeback import (
    Edit,
    EditRejected,
    FileListed,
    NotAVariant,
    TargetMissing,
)
from llmops.engine.spec import schema
from llmops.engine.types import Kind


def _yaml(text: str) -> YAML:
    """A round-trip YAML instance that writes ``text`` back as it was read."""
    try:
        _, seq_indent, offset = load_yaml_guess_indent(text)
    except YAMLError:
        seq_indent, offset = None, None
    mapping = 2
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and line != stripped and not stripped.startswith(("#", "- ", "-\n")):
            mapping = len(line) - len(stripped)
            break
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    if seq_indent is None or offset is None:  # no block sequence to learn from
        seq_indent, offset = mapping + 2, mapping
    yaml.indent(mapping=mapping, sequence=max(seq_indent, offset + 2), offset=offset)
    return yaml


def _edit_document(text: str, kind: str, name: str, version: str | None,
                   change: Callable[[Any], None]) -> str:
    """Apply ``change`` to the ``spec`` mapping of the matching document of ``text``."""
    yaml = _yaml(text)
    try:
        docs = list(yaml.load_all(text))
    except YAMLError as exc:
        raise EditRejected(f"{kind}/{name}: the spec file does not parse: "
                           f"{str(exc).splitlines()[0]}") from None
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            continue
        meta, body = doc.get("metadata"), doc.get("spec")
        if not isinstance(meta, dict) or meta.get("name") != name or not isinstance(body, dict):
            continue
        if version is not None and str(body.get("version")) != version:
            continue
        change(body)
        out = io.StringIO()
        yaml.dump_all(docs, out)
        return out.getvalue()
    shown = f"{name}@{version}" if version is not None else name
    raise TargetMissing(f"{kind}/{shown} is not in its spec file any more")


def _set(body: Any, field: str, value: Any) -> None:
    """Set ``field``, appending it when absent (existing keys keep their place)."""
    if field in body:
        body[field] = value
    else:
        body.insert(len(body), field, value)


def _text(value: str) -> str:
    return LiteralScalarString(value if value.endswith("\n") else value + "\n") \
        if "\n" in value.strip("\n") else value


def set_fields(kind: str, name: str, version: str | None, fields: dict[str, Any]) -> Edit:
    """Each of ``fields`` set in the spec (mappings replaced whole); others left as they are."""

    def edit(text: str) -> str:
        def change(body: Any) -> None:
            for key, value in fields.items():
                _set(body, key, value)
        return _edit_document(text, kind, name, version, change)
    return edit


def set_model_stage(name: str, version: str, stage: schema.ModelStage) -> Edit:
    def edit(text: str) -> str:
        return _edit_document(text, Kind.MODEL, name, version,
                              lambda body: _set(body, "stage", stage.value))
    return edit


def conclude_experiment(name: str, winner: str, notes: str | None) -> Edit:
    """``state: concluded``, ``winner`` (must be a variant's templateRef) and ``notes``."""

    def change(body: Any) -> None:
        variants = body.get("variants") or []
        refs = [str(v.get("templateRef")) for v in variants if isinstance(v, dict)]
        if winner not in refs:
            raise NotAVariant(f"winner {winner!r} is not one of the variants "
                               f"({', '.join(refs)})")
        _set(body, "state", schema.ExperimentState.CONCLUDED.value)
        _set(body, "winner", winner)
        if notes is not None:
            _set(body, "notes", _text(notes))

    def edit(text: str) -> str:
        return _edit_document(text, Kind.PROMPT_EXPERIMENT, name, None, change)
    return edit


def record_model_files(name: str, version: str, storage_uri: str,
                       new_files: Sequence[schema.ModelFile]) -> Edit:
    """``storageUri`` set and each of ``new_files`` added to ``files`` (never replaced:
    a name already listed is refused, a changed file needs a new version)."""

    def change(body: Any) -> None:
        _set(body, "storageUri", storage_uri)
        files = body.get("files")
        if not isinstance(files, list):
            _set(body, "files", [])
            files = body["files"]
        listed = {str(item.get("name")) for item in files if isinstance(item, dict)}
        for file in new_files:
            if file.name in listed:
                raise FileListed(f"model {name} {version} already lists {file.name}; a "
                                 "changed file needs a new version")
            files.append({"name": file.name, "sha256": file.sha256, "size": file.size})

    def edit(text: str) -> str:
        return _edit_document(text, Kind.MODEL, name, version, change)
    return edit
