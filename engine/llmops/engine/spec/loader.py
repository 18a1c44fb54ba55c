"""The load stage: a specs repo on disk -> YAML documents with positions.

Input: a directory (a checkout at one commit, or a local folder). Output: a
``Loaded`` value holding every document of every ``*.yaml``/``*.yml`` file
(dot-folders skipped), the repo config document (``llmops.yaml``), and every
problem found, each naming file, line and column. Called by
``llmops.engine.spec.validate`` users: the CLI and the reconciler.

The loader is written for hostile input. It parses with libyaml's C parser
(PyYAML's ``CSafeLoader`` event stream) and builds values itself, so that it
controls everything a YAML document can do:

- only the YAML 1.2 core schema: no ``!!python/*`` or custom tags, no
  timestamps, no 1.1 surprises (``on`` is a string, ``18:00`` is not 1080);
- duplicate keys at any depth are errors;
- aliases are capped in number and in expanded size (billion laughs fails in
  microseconds), nesting is capped in depth;
- files over a byte cap and repos over a total cap are refused before parsing;
- bytes that are not UTF-8, symlinks, and anything but regular files are errors.

Parsed documents are cached by path and git blob SHA, so an unchanged file is
parsed once per process. ``load_contents`` loads files given as bytes (a
commit read from git objects) exactly as ``load_repo`` loads a folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.engine.errors import SpecError, SpecIssue
from llmops.engine.types import Document, FieldPath

CONFIG_FILES = ("llmops.yaml", "llmops.yml")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one repo may hold; each breach is an error, never a truncation."""

    max_file_bytes: int = 1024 * 1024
    max_repo_bytes: int = 64 * 1024 * 1024
    max_files: int = 20_000
    max_documents_per_file: int = 1_000
    max_depth: int = 64
    max_aliases: int = 100
    max_nodes: int = 200_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the load stage produced for one repo."""

    root: str
    documents: tuple[Document, ...]
    config: Document | None
    issues: tuple[SpecIssue, ...]
    files: tuple[str, ...] = ()


class _ParseError(Exception):
    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    @classmethod
    def at(cls, message: str, mark: Any) -> _ParseError:
        """An error at a libyaml mark (0-based), reported 1-based."""
        if mark is None:
            return cls(message)
        return cls(message, mark.line + 1, mark.column + 1)


# --------------------------------------------------------------------------- scalars

_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True,
         "false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"^[-+]?[0-9]+$")
_OCT_RE = re.compile(r"^0o[0-7]+$")
_HEX_RE = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT_RE = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF_RE = re.compile(r"^([-+]?)\.(?:inf|Inf|INF)$")
_NAN_RE = re.compile(r"^\.(?:nan|NaN|NAN)$")

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}
_ALLOWED_TAGS |= {"!"}


_WORDS: dict[str, Any] = {"null": None, "Null": None, "NULL": None, **_BOOL}
_NON_WORD_START = frozenset("0123456789+-.~")
"""The first characters of every plain scalar that is not a string, but the words."""


def _plain_scalar(text: str) -> Any:
    """Resolve a plain (unquoted) scalar by the YAML 1.2 core schema."""
    if text and text[0] not in _NON_WORD_START:  # the common case: a word
        return _WORDS[text] if text in _WORDS else text
    if _NULL_RE.match(text):
        return None
    if _INT_RE.match(text):
        return int(text)
    if _OCT_RE.match(text):
        return int(text[2:], 8)
    if _HEX_RE.match(text):
        return int(text[2:], 16)
    if _FLOAT_RE.match(text):
        return float(text)
    inf = _INF_RE.match(text)
    if inf:
        return float("-inf") if inf.group(1) == "-" else float("inf")
    if _NAN_RE.match(text):
        return float("nan")
    return text


def _tagged_scalar(tag: str, text: str, line: int, col: int) -> Any:
    short = tag.removeprefix(_CORE)
    if short == "str" or tag == "!":
        return text
    value = _plain_scalar(text)
    expected: Any = {"int": int, "float": (int, float), "bool": bool,
                     "null": type(None)}.get(short)
    if expected is None or isinstance(value, bool) != (short == "bool") or not isinstance(
        value, expected
    ):
        raise _ParseError(f"value {text[:40]!r} is not a valid !!{short}", line, col)
    return float(value) if short == "float" else value


# --------------------------------------------------------------------------- builder


_ALIAS, _SCALAR = yaml.AliasEvent, yaml.ScalarEvent
_SEQUENCE, _MAPPING = yaml.SequenceStartEvent, yaml.MappingStartEvent
_SEQUENCE_END, _MAPPING_END = yaml.SequenceEndEvent, yaml.MappingEndEvent
_NODE_STARTS = frozenset((_SCALAR, _SEQUENCE, _MAPPING))


class _Builder:
    """Turns a libyaml event stream into plain values plus a position per field.

    Called once per node of every spec file: the checks are inlined (a 10,000-endpoint
    repo has millions of nodes)."""

    def __init__(self, next_event: Callable[[], Any], limits: Limits) -> None:
        self._next = next_event
        self.limits = limits
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.aliases = 0
        self.nodes = 0
        self.positions: dict[FieldPath, tuple[int, int]] = {}

    def _count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            raise _ParseError.at(
                f"document expands to more than {self.limits.max_nodes} values "
                "(alias bomb or oversized document)",
                mark,
            )

    @staticmethod
    def _bad_tag(tag: str, mark: Any) -> _ParseError:
        return _ParseError.at(f"tag {tag[:60]!r} is not allowed (only the YAML core schema is)",
                              mark)

    def node(self, event: Any, path: FieldPath, depth: int) -> tuple[Any, int]:
        """Build the value that starts with ``event``; returns it and its size in values."""
        mark: Any = event.start_mark
        line, col = mark.line + 1, mark.column + 1
        self.positions[path] = (line, col)
        if depth > self.limits.max_depth:
            raise _ParseError(f"nesting deeper than {self.limits.max_depth} levels", line, col)
        kind = type(event)
        if kind is _ALIAS:
            return self._alias(event, mark)
        if kind not in _NODE_STARTS:  # pragma: no cover - libyaml emits no other
            raise _ParseError(f"unexpected YAML event {kind.__name__}", line, col)
        tag = event.tag
        if tag is not None and tag not in _ALLOWED_TAGS:
            raise self._bad_tag(tag, mark)
        self._count(1, mark)
        result: tuple[Any, int]
        if kind is _SCALAR:
            if tag is not None and tag != "!":
                result = (_tagged_scalar(tag, event.value, line, col), 1)
            elif event.implicit[0]:
                result = (_plain_scalar(event.value), 1)
            else:
                result = (event.value, 1)
        elif kind is _SEQUENCE:
            result = self._sequence(path, depth)
        else:
            result = self._mapping(path, depth)
        if event.anchor is not None:
            self.anchors[event.anchor] = result
        return result

    def _alias(self, event: yaml.AliasEvent, mark: Any) -> tuple[Any, int]:
        line, col = mark.line + 1, mark.column + 1
        self.aliases += 1
        if self.aliases > self.limits.max_aliases:
            raise _ParseError(f"more than {self.limits.max_aliases} aliases", line, col)
        if event.anchor not in self.anchors:
            raise _ParseError(f"unknown alias *{event.anchor}", line, col)
        value, size = self.anchors[event.anchor]
        self._count(size, mark)
        return value, size

    def _sequence(self, path: FieldPath, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        size = 1
        child = self._next()
        while type(child) is not _SEQUENCE_END:
            value, n = self.node(child, (*path, len(items)), depth + 1)
            items.append(value)
            size += n
            child = self._next()
        return items, size

    def _mapping(self, path: FieldPath, depth: int) -> tuple[dict[str, Any], int]:
        mapping: dict[str, Any] = {}
        size = 1
        key_event = self._next()
        while type(key_event) is not _MAPPING_END:
            if type(key_event) is not _SCALAR:
                raise _ParseError.at("mapping keys must be plain scalars", key_event.start_mark)
            tag = key_event.tag
            if tag is not None and tag not in _ALLOWED_TAGS:
                raise self._bad_tag(tag, key_event.start_mark)
            key = key_event.value
            if key in mapping:
                first = self.positions.get((*path, key), (0, 0))
                raise _ParseError.at(
                    f"duplicate key {key[:60]!r} (first defined at line {first[0]})",
                    key_event.start_mark)
            if key_event.anchor is not None:
                self.anchors[key_event.anchor] = (key, 1)
            value, n = self.node(self._next(), (*path, key), depth + 1)
            mapping[key] = value
            size += n + 1
            key_event = self._next()
        return mapping, size


def parse_documents(text: str, file: str, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Parse YAML text into documents; raises ``_ParseError`` on any problem."""
    documents: list[Document] = []
    loader: yaml.CSafeLoader | None = None
    try:
        loader = yaml.CSafeLoader(text)
        # One C call per event (yaml.parse wraps it in a Python generator).
        next_event: Callable[[], Any] = loader.get_event
        event = next_event()
        while type(event) is not yaml.StreamEndEvent:
            if type(event) is not yaml.DocumentStartEvent:
                event = next_event()
                continue
            if len(documents) >= limits.max_documents_per_file:
                raise _ParseError.at(
                    f"more than {limits.max_documents_per_file} documents in one file",
                    event.start_mark,
                )
            builder = _Builder(next_event, limits)
            first = next_event()
            value, _ = builder.node(first, (), 0)
            end = next_event()
            if not isinstance(end, yaml.DocumentEndEvent):  # pragma: no cover - libyaml's job
                raise _ParseError.at("malformed document", end.start_mark)
            mark: Any = first.start_mark
            documents.append(
                Document(file=file, index=len(documents), line=mark.line + 1,
                         column=mark.column + 1, data=value, positions=builder.positions)
            )
            event = next_event()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        raise _ParseError.at(f"YAML syntax error: {problem}",
                             exc.problem_mark or exc.context_mark) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark
        raise _ParseError(f"YAML error: {exc.reason} (character #x{exc.character:04x})",
                          *_line_column(text, exc.position)) from None
    except yaml.YAMLError as exc:
        raise _ParseError(f"YAML error: {str(exc).splitlines()[0][:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def _line_column(text: str, position: int) -> tuple[int, int]:
    """The 1-based line and column of ``position`` in ``text`` (libyaml counts UTF-8 bytes:
    it reads a ``str`` encoded so)."""
    before = text.encode("utf-8")[:max(0, position)].decode("utf-8", "ignore")
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def blob_sha(data: bytes) -> str:
    """The git blob SHA-1 of ``data``: the same key git uses for the file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class ParseCache:
    """Parsed documents (or the parse error) per (path, blob SHA); thread-safe."""

    max_entries: int = 100_000
    hits: int = 0
    misses: int = 0
    _entries: dict[tuple[str, str], tuple[Document, ...] | SpecIssue] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str]) -> tuple[Document, ...] | SpecIssue | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: tuple[str, str], value: tuple[Document, ...] | SpecIssue) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = value


DEFAULT_CACHE = ParseCache()


def load_bytes(data: bytes, file: str, limits: Limits = DEFAULT_LIMITS,
               cache: ParseCache | None = DEFAULT_CACHE) -> tuple[Document, ...]:
    """Documents of one file's bytes; raises ``SpecError`` with the issue on failure."""
    key = (file, blob_sha(data))
    cached = cache.get(key) if cache is not None else None
    if cached is None:
        cached = _parse_bytes(data, file, limits)
        if cache is not None:
            cache.put(key, cached)
    if isinstance(cached, SpecIssue):
        raise SpecError([cached])
    return cached


def _parse_bytes(data: bytes, file: str, limits: Limits) -> tuple[Document, ...] | SpecIssue:
    if len(data) > limits.max_file_bytes:
        return SpecIssue(file=file, message=f"file is {len(data)} bytes, over the "
                         f"{limits.max_file_bytes}-byte cap")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return SpecIssue(file=file, line=line, column=col,
                         message="file is not valid UTF-8")
    text = text.removeprefix("\ufeff")
    try:
        return tuple(parse_documents(text, file, limits))
    except _ParseError as exc:
        return SpecIssue(file=file, line=exc.line, column=exc.column, message=exc.message)


# --------------------------------------------------------------------------- repo walk


def _walk(root: Path, limits: Limits) -> tuple[list[tuple[str, str]], list[SpecIssue]]:
    """Every YAML file under ``root`` (relative posix path, absolute path), sorted."""
    found: list[tuple[str, str]] = []
    issues: list[SpecIssue] = []
    top = str(root)
    cut = len(top) if top.endswith("/") else len(top) + 1
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        where = dirpath[cut:]  # "" at the top
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                rel = f"{where}/{d}" if where else d
                issues.append(SpecIssue(file=rel, message=_symlink_message(Path(full), root)))
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if not name.endswith(YAML_SUFFIXES) or name.startswith("."):
                continue
            found.append((f"{where}/{name}" if where else name, os.path.join(dirpath, name)))
            if len(found) > limits.max_files:
                issues.append(SpecIssue(file=".", message=f"repo holds more than "
                                        f"{limits.max_files} YAML files"))
                return [], issues
    found.sort()
    return found, issues


def _symlink_message(path: Path, root: Path) -> str:
    try:
        target = path.resolve(strict=False)
        inside = target == root or root in target.parents
    except (OSError, RuntimeError):
        inside = False
    where = "inside" if inside else "outside"
    return f"is a symbolic link to a path {where} the repo; llmops does not follow links"


def _read_regular(path: str, rel: str, root: Path, limits: Limits) -> bytes | SpecIssue:
    try:
        info = os.lstat(path)
    except OSError as exc:
        return SpecIssue(file=rel, message=f"cannot read: {exc.strerror}")
    if stat.S_ISLNK(info.st_mode):
        return SpecIssue(file=rel, message=_symlink_message(Path(path), root))
    if not stat.S_ISREG(info.st_mode):
        return SpecIssue(file=rel, message="is not a regular file")
    if info.st_size > limits.max_file_bytes:
        return SpecIssue(file=rel, message=f"file is {info.st_size} bytes, over the "
                         f"{limits.max_file_bytes}-byte cap")
    chunks: list[bytes] = []
    left = limits.max_file_bytes + 1
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            while left > 0 and (chunk := os.read(fd, left)):
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        return SpecIssue(file=rel, message=f"cannot read: {exc.strerror}")
    return b"".join(chunks)


def load_repo(root: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS,
              cache: ParseCache | None = DEFAULT_CACHE) -> Loaded:
    """Load every YAML document under ``root``; problems are collected, not raised."""
    base = Path(root).resolve()
    if not base.is_dir():
        issue = SpecIssue(file=str(root), message="is not a directory")
        return Loaded(root=str(root), documents=(), config=None, issues=(issue,))
    files, issues = _walk(base, limits)
    contents = ((rel, _read_regular(full, rel, base, limits)) for rel, full in files)
    return _collect(str(base), [rel for rel, _ in files], contents, issues, limits, cache)


def load_contents(root: str, contents: Iterable[tuple[str, bytes]],
                  limits: Limits = DEFAULT_LIMITS,
                  cache: ParseCache | None = DEFAULT_CACHE) -> Loaded:
    """Load files given as (relative posix path, bytes), in path order, as ``load_repo``
    loads the same files from a folder ``root`` (a name only: nothing is read from it).
    The caller has already refused what a folder walk refuses (links, dot-folders,
    files over the cap are its job)."""
    ordered = sorted(contents)
    return _collect(root, [rel for rel, _ in ordered], ordered, [], limits, cache)


def _collect(root: str, names: list[str], contents: Iterable[tuple[str, bytes | SpecIssue]],
             issues: list[SpecIssue], limits: Limits, cache: ParseCache | None) -> Loaded:
    """Parse each file's bytes (or keep its read problem) into a ``Loaded`` of ``names``
    (every file found, also those past the repo cap)."""
    documents: list[Document] = []
    config: Document | None = None
    total = 0
    for rel, data in contents:
        if isinstance(data, SpecIssue):
            issues.append(data)
            continue
        total += len(data)
        if total > limits.max_repo_bytes:
            issues.append(SpecIssue(file=rel, message=f"repo holds more than "
                                    f"{limits.max_repo_bytes} bytes of YAML"))
            break
        try:
            docs = load_bytes(data, rel, limits, cache)
        except SpecError as exc:
            issues.extend(exc.issues)
            continue
        docs = tuple(d for d in docs if d.data is not None)
        if rel in CONFIG_FILES:
            if len(docs) != 1:
                issues.append(SpecIssue(file=rel, message="the repo config must hold "
                                        f"exactly one document, found {len(docs)}"))
            elif config is not None:
                issues.append(SpecIssue(file=rel, message=f"a second repo config beside "
                                        f"{config.file}"))
            else:
                config = docs[0]
            continue
        documents.extend(docs)
    if config is None and not any(i.file in CONFIG_FILES for i in issues):
        issues.append(SpecIssue(file="llmops.yaml", message="the repo config llmops.yaml is "
                                "missing at the repo root"))
    return Loaded(root=root, documents=tuple(documents), config=config,
                  issues=tuple(issues), files=tuple(names))
