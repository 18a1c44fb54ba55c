"""The audit chain's keys and anchors: what the database does not hold.

Role: make the audit chain unforgeable by someone who can write the
database. ``AuditKey`` keys the chain (each entry's hash is an HMAC-SHA256
under it; the database stores only its ``key_id``, a fingerprint); a
``Keyring`` holds the current key and the retired ones (``rotate_key_file``
keeps the old key as ``audit-key.<key id>``), so every entry and anchor is
verified with the key it names. An ``Anchor`` is (entry id, that entry's chain
hash, time), MAC'd; the ``AnchorFile`` is an append-only JSON-lines file of
them outside the database, and ``Anchor.trailers``/``from_trailers`` carry one
in a commit message (``run.anchoring`` commits them to the specs repo), so
``llmops audit verify`` detects a rewritten, reordered or truncated chain, not
only an edited row. Input: ``Settings`` (``LLMOPS_AUDIT__KEY`` or the 0600
file ``$LLMOPS_HOME/audit-key``; ``LLMOPS_AUDIT__PREVIOUS_KEYS`` and the
``audit-key.<key id>`` files; ``LLMOPS_AUDIT__ANCHOR_FILE``, by default
``$LLMOPS_HOME/audit-anchors.jsonl``). Output: a ``Seal`` (keyring + anchor
file) that ``compose.open_store`` attaches to the ``Store`` and ``store.audit``
uses. Callers: ``store.audit`` (hashing, anchoring, verifying),
``service.compose``, ``run.anchoring`` and ``llmops audit verify``/``rotate-key``.

The key never enters the database, a log line, an error or an audit row.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import orjson

from llmops.engine import settings
from llmops.engine.errors import LlmopsError

KEY_FILE = "audit-key"
ANCHOR_FILE = "audit-anchors.jsonl"
MIN_KEY_BYTES = 32
_ID_DOMAIN = b"llmops-audit-key-id\x00"
_ANCHOR_DOMAIN = b"llmops-audit-anchor\x00"
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class AuditKeyError(LlmopsError):
    """The audit key is missing, unreadable or unsafe; the message says where to put it."""


@dataclass(frozen=True, slots=True)
class AuditKey:
    """An HMAC key for the audit chain; ``repr`` shows only its fingerprint."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise AuditKeyError(f"the audit key must be at least {MIN_KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        """16 hex digits naming the key (stored with each entry; reveals nothing of it)."""
        return hashlib.sha256(_ID_DOMAIN + self.secret).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id})"


@dataclass(frozen=True, slots=True)
class Anchor:
    """The chain's head at one moment, as written outside the database."""

    id: int
    hash: str
    at: str
    mac: str = ""
    key_id: str = ""
    """The key that MAC'd it (empty in lines written before key rotation existed)."""

    def signed_bytes(self) -> bytes:
        return _ANCHOR_DOMAIN + f"{self.id}\x00{self.hash}\x00{self.at}".encode("ascii")

    def trailers(self) -> str:
        """The anchor as git trailers (``Llmops-Audit-Entry: 42`` ...), for a commit message."""
        return "".join(f"{name}: {getattr(self, field)}\n" for name, field in _TRAILERS)


_TRAILERS = (("Llmops-Audit-Entry", "id"), ("Llmops-Audit-Hash", "hash"),
             ("Llmops-Audit-At", "at"), ("Llmops-Audit-Key-Id", "key_id"),
             ("Llmops-Audit-Mac", "mac"))


def from_trailers(trailers: Mapping[str, str]) -> Anchor | None:
    """The anchor a commit's trailers hold (its MAC unchecked), or None when they hold none."""
    try:
        values = {field: trailers[name].strip() for name, field in _TRAILERS}
        return Anchor(int(values.pop("id")), **values)
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key (it keys new entries and anchors) and the retired ones, kept so
    entries and anchors written under them still verify; ``repr`` shows key ids only."""

    current: AuditKey
    retired: tuple[AuditKey, ...] = ()

    def get(self, key_id: str) -> AuditKey | None:
        return next((k for k in (self.current, *self.retired) if k.key_id == key_id), None)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in (self.current, *self.retired))

    def sign(self, entry_id: int, entry_hash: str) -> Anchor:
        """An anchor of (entry id, hash) at the present time, MAC'd with the current key."""
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        unsigned = Anchor(entry_id, entry_hash, at)
        return replace(unsigned, mac=self.current.mac(unsigned.signed_bytes()),
                       key_id=self.current.key_id)

    def check(self, anchor: Anchor) -> str:
        """Why ``anchor`` cannot be trusted ("" when its MAC verifies under the key it
        names; one without a key id is tried with every key)."""
        if anchor.key_id:
            key = self.get(anchor.key_id)
            if key is None:
                return (f"is unverifiable: key id {anchor.key_id} is not in the keyring "
                        f"({', '.join(self.key_ids)})")
            keys: tuple[AuditKey, ...] = (key,)
        else:
            keys = (self.current, *self.retired)
        try:
            signed = anchor.signed_bytes()
        except UnicodeEncodeError:
            return "is not an anchor"
        if any(hmac.compare_digest(k.mac(signed), anchor.mac) for k in keys):
            return ""
        return "is forged (its MAC does not match the key)"


class AnchorFile:
    """An append-only JSON-lines file of anchors (0600, one ``write`` per line)."""

    def __init__(self, path: Path, keys: Keyring, *, every: int = 100) -> None:
        self.path = path
        self.keys = keys
        self.every = max(1, every)
        self._last_id: int | None = None

    def last_id(self) -> int:
        """The newest anchored entry id (0 when none), read once then tracked."""
        if self._last_id is None:
            anchors = [a for a in self.read() if isinstance(a, Anchor)]
            self._last_id = max((a.id for a in anchors), default=0)
        return self._last_id

    def due(self, head_id: int, *, force: bool = False) -> bool:
        last = self.last_id()
        return head_id > last and (force or head_id - last >= self.every)

    def write(self, entry_id: int, entry_hash: str) -> Anchor:
        anchor = self.keys.sign(entry_id, entry_hash)
        line = orjson.dumps({"id": anchor.id, "hash": anchor.hash, "at": anchor.at,
                             "key": anchor.key_id, "mac": anchor.mac}) + b"\n"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(
            os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._last_id = max(self._last_id or 0, entry_id)
        return anchor

    def read(self) -> list[Anchor | str]:
        """Every line: an ``Anchor`` whose MAC verifies, else a string saying what is wrong."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [_parse(number, line, self.keys) for number, line in enumerate(lines, 1)
                if line.strip()]


def _parse(number: int, line: bytes, keys: Keyring) -> Anchor | str:
    try:
        raw = orjson.loads(line)
        anchor = Anchor(int(raw["id"]), str(raw["hash"]), str(raw["at"]), str(raw["mac"]),
                        str(raw.get("key", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return f"anchor line {number} is not an anchor"
    problem = keys.check(anchor)
    return f"anchor line {number} {problem}" if problem else anchor


@dataclass(frozen=True, slots=True)
class Seal:
    """What keys and anchors one store's audit chain."""

    keys: Keyring
    anchors: AnchorFile | None = None

    @property
    def key(self) -> AuditKey:
        """The current key (new entries are keyed with it)."""
        return self.keys.current


# --------------------------------------------------------------------------- the key on disk


def read_key_file(path: Path) -> AuditKey:
    """The key in ``path`` (hex), refused when others may read it or it is a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as err:
        raise AuditKeyError(f"no audit key: {path} does not exist (llmops up, serve and the "
                            "daemon create it; or set LLMOPS_AUDIT__KEY)") from err
    except OSError as err:
        raise AuditKeyError(f"audit key {path} is unreadable: {err.strerror}") from err
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditKeyError(f"audit key {path} is readable by others (mode "
                                f"{stat.S_IMODE(mode):04o}); chmod 600 it")
        text = fh.read().decode("ascii", "replace").strip()
    try:
        return AuditKey(bytes.fromhex(text))
    except ValueError as err:
        raise AuditKeyError(f"audit key {path} is not {MIN_KEY_BYTES} or more bytes of "
                            "hex") from err


def create_key_file(path: Path) -> AuditKey:
    """A new random key in a new 0600 file at ``path``, or the key already there (the
    file is linked into place, so two processes starting at once keep one key)."""
    if path.exists() or path.is_symlink():
        return read_key_file(path)
    temp = _private_file(path, secrets.token_hex(MIN_KEY_BYTES))
    try:
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return read_key_file(path)


def _private_file(path: Path, hex_key: str, *, temporary: bool = True) -> Path:
    """``hex_key`` written and synced to a new 0600 file (O_EXCL, O_NOFOLLOW): a hidden
    temporary sibling of ``path`` to link or rename into place, or ``path`` itself."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp") if temporary else path
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(hex_key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return target


def retired_path(path: Path, key_id: str) -> Path:
    """Where a retired key is kept: ``<key file>.<key id>`` beside the current one."""
    return path.with_name(f"{path.name}.{key_id}")


def read_retired(path: Path) -> tuple[AuditKey, ...]:
    """The retired keys beside the key file ``path`` (``audit-key.<key id>``), each checked
    to be the key its name says."""
    found = []
    for candidate in sorted(path.parent.glob(f"{path.name}.*")):
        key_id = candidate.name.removeprefix(f"{path.name}.")
        if not _KEY_ID.fullmatch(key_id):
            continue
        key = read_key_file(candidate)
        if key.key_id != key_id:
            raise AuditKeyError(f"retired audit key {candidate} holds key id {key.key_id}, "
                                "not the one its name says")
        found.append(key)
    return tuple(found)


def rotate_key_file(path: Path) -> tuple[AuditKey, AuditKey]:
    """(new, old): the key in ``path`` kept as ``retired_path`` (for verifying what it
    keyed), then a new random key renamed over ``path``. Processes holding the old key
    keep writing with it until restarted; every entry names the key it was keyed with."""
    old = read_key_file(path)
    keep = retired_path(path, old.key_id)
    try:
        _private_file(keep, old.secret.hex(), temporary=False)
    except FileExistsError:
        if read_key_file(keep) != old:
            raise AuditKeyError(f"{keep} exists and holds another key; move it away") from None
    temp = _private_file(path, secrets.token_hex(MIN_KEY_BYTES))
    try:
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return read_key_file(path), old


def key_from_text(text: str) -> AuditKey:
    """A key given in settings: hex of 32+ bytes, or any text of 32+ characters."""
    text = text.strip()
    try:
        return AuditKey(bytes.fromhex(text))
    except (ValueError, AuditKeyError):
        if len(text) < MIN_KEY_BYTES:
            raise AuditKeyError(f"LLMOPS_AUDIT__KEY must hold at least {MIN_KEY_BYTES} "
                                "characters (or hex digits of as many bytes)") from None
        return AuditKey(text.encode("utf-8"))


def from_settings(cfg: settings.Settings, *, create: bool) -> Seal | None:
    """The configured seal: the current key from ``LLMOPS_AUDIT__KEY`` or the key file
    (made when ``create`` and missing), the retired ones from
    ``LLMOPS_AUDIT__PREVIOUS_KEYS`` and the ``audit-key.<key id>`` files beside the key
    file, anchors in the anchor file. None only when the key file is missing and
    ``create`` is false (a reader such as ``llmops audit tail``)."""
    home = cfg.home.absolute()
    path = key_path(cfg)
    if cfg.audit.key is not None:
        key = key_from_text(cfg.audit.key.get_secret_value())
    elif create:
        key = create_key_file(path)
    elif path.exists() or path.is_symlink():
        key = read_key_file(path)
    else:
        return None
    retired = tuple(key_from_text(k.get_secret_value()) for k in cfg.audit.previous_keys)
    keys = Keyring(key, tuple(k for k in (*retired, *read_retired(path)) if k != key))
    anchors = Path(cfg.audit.anchor_file) if cfg.audit.anchor_file else home / ANCHOR_FILE
    return Seal(keys, AnchorFile(anchors, keys, every=cfg.audit.anchor_every))


def key_path(cfg: settings.Settings) -> Path:
    """The key file: ``LLMOPS_AUDIT__KEY_FILE``, else ``$LLMOPS_HOME/audit-key``."""
    return Path(cfg.audit.key_file) if cfg.audit.key_file else cfg.home.absolute() / KEY_FILE
