"""Value types shared by every stage: identities, loaded documents and raw objects.

This module sits at the bottom of the import layers: it imports nothing from
llmops, and every other module may import it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

API_VERSION = "llmops.io/v1alpha1"

# Namespace of the stable UUIDv5 ids the API exposes for specs.
ID_NAMESPACE = uuid.UUID("5d3f7c1e-2a4b-5c6d-8e9f-0a1b2c3d4e5f")

KubeObject = dict[str, Any]
"""A Kubernetes object as plain data (apiVersion, kind, metadata, ...)."""

FieldPath = tuple[str | int, ...]


class Kind(StrEnum):
    MODEL = "Model"
    PROMPT_TEMPLATE = "PromptTemplate"
    SERVING_ENDPOINT = "ServingEndpoint"
    PROMPT_EXPERIMENT = "PromptExperiment"
    TRAINING_JOB = "TrainingJob"
    DATASET = "Dataset"
    POLICY = "Policy"


GLOBAL_KINDS = frozenset({Kind.MODEL, Kind.DATASET, Kind.POLICY, Kind.PROMPT_TEMPLATE})
"""Kinds shared by every environment (their ``SpecKey`` has no environment); every
other kind, and the environment itself as the owner of its namespaces, belongs to one."""


class SpecKey(NamedTuple):
    """Identity of a spec: (kind, environment, name); environment is "" for global kinds.

    Models are versioned: their name slot holds ``name@version``.
    """

    kind: str
    environment: str
    name: str

    def __str__(self) -> str:
        scope = f"{self.environment}/" if self.environment else ""
        return f"{self.kind} {scope}{self.name}"

    @property
    def id(self) -> uuid.UUID:
        return uuid.uuid5(ID_NAMESPACE, f"{self.kind}/{self.environment}/{self.name}")


class ResourceKey(NamedTuple):
    """Identity of a Kubernetes object: (group, kind, namespace, name)."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ResourceKey:
        api_version = str(obj.get("apiVersion", ""))
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
        meta = obj.get("metadata") or {}
        return cls(group, str(obj.get("kind", "")), str(meta.get("namespace") or ""),
                   str(meta.get("name", "")))


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document of a specs repo, with the position of every field.

    ``positions`` maps a field path (keys and list indexes from the document
    root) to the (line, column) where its value starts, both 1-based.
    """

    file: str
    index: int
    line: int
    column: int
    data: Any
    positions: dict[FieldPath, tuple[int, int]] = field(default_factory=dict, compare=False)

    def locate(self, path: FieldPath) -> tuple[int, int]:
        """Position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos is not None:
                return pos
        return (self.line, self.column)


def canonical_json(value: Any) -> bytes:
    """A stable encoding (sorted keys, no whitespace) used for hashing."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
