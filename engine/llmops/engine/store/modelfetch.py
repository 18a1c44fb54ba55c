"""Model files out of S3 into a local directory, verified against the digests of the catalog.

Role: the download half of ``modelfiles``. A serving or training pod's init
container runs ``llmops fetch-model``, which calls ``fetch``: every file the
Model spec lists (name, sha256, size, recorded at upload) is copied from
``s3://<bucket>/models/<name>/<version>/<file>`` into ``dest/<file>``, hashed
as it arrives and moved into place only when its size and sha256 match. A
file missing from the bucket, shorter, longer or altered is a ``FetchError``
naming the file and the object; nothing unverified is left under its final
name. Input: a boto3 S3 client, the storage URI, the destination directory
and the expected files. Output: ``Fetched`` (what was copied, resumed or
already there). Callers: ``llmops.cli.fetch_cmd``.

Interrupted copies resume: bytes arrive in ``dest/.partial/<file>.part``; a
second run asks S3 only for the rest (an HTTP range) and hashes the whole
file before the rename. A resumed file whose digest does not match is copied
once more from the start (the partial bytes may be what was wrong) before it
counts as altered. A file already in place with its recorded size and digest
is not copied again (a PVC cache shared by restarts and replicas), and a
marker ``.llmops-fetched.json`` written after a complete, verified fetch lets
the next run skip re-hashing files whose size still matches.

Keys come from the validated storage URI and file names that match
``schema.MODEL_FILE_RE`` (no ``/``, no ``..``): a key can never address a
path outside ``dest``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from llmops.engine import errors
from llmops.engine.settings import S3Settings
from llmops.engine.spec import schema
from llmops.engine.store import modelfiles

CHUNK_BYTES = 1024 * 1024
PARTIAL_DIR = ".partial"
MARKER_FILE = ".llmops-fetched.json"
_URI = re.compile(schema.S3_URI_RE)
_FILE = re.compile(schema.MODEL_FILE_RE, re.ASCII)
_MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class FetchError(errors.LlmopsError):
    """A model file could not be fetched and verified; it was not put in place."""


class Missing(FetchError, errors.NotFound):
    """A file the model lists is not in the bucket."""


class Altered(FetchError, errors.Malformed):
    """A file's size or sha256 differs from the one recorded at upload."""


class BadRequest(FetchError, errors.InvalidInput):
    """The storage URI or the file list cannot be used."""


class StorageUnavailable(FetchError, errors.Unavailable):
    """S3 failed or could not be reached (retryable)."""


class S3Reader(Protocol):
    """The part of boto3's S3 client used here."""

    def get_object(self, **kwargs: Any) -> Any: ...


@dataclass
class Fetched:
    """What one ``fetch`` did, file by file."""

    copied: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0


def reader(settings: S3Settings) -> S3Reader:
    """A boto3 S3 client with the settings' endpoint and timeouts (credentials: AWS sources)."""
    return modelfiles.client(settings)


def split_uri(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix/`` (a model's storage URI)."""
    if not _URI.fullmatch(uri):
        raise BadRequest(f"storage URI {uri[:200]!r} is not s3://<bucket>/<prefix>/ "
                         "(with the trailing slash)")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def check_files(files: Sequence[schema.StoredFile]) -> None:
    if not files:
        raise BadRequest("the model lists no files (name, sha256, size), so nothing can be "
                         "verified; record them at upload")
    for f in files:
        if not _FILE.fullmatch(f.name) or ".." in f.name:
            raise BadRequest(f"file name {f.name[:80]!r} is not a plain model file name")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _s3_error(exc: BotoCoreError | ClientError, uri: str) -> FetchError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            return Missing(f"{uri}: not found in the bucket ({code})")
        if code == "InvalidRange":
            return Altered(f"{uri}: shorter than the partial copy (the object changed)")
    first = str(exc).splitlines()[0][:300] if str(exc) else ""
    return StorageUnavailable(f"{uri}: S3 GET failed: {type(exc).__name__}: {first}")


OnChunk = Callable[[str, int], None]
"""Called with the file name and the bytes received so far, after every chunk written."""


class _Fetcher:
    def __init__(self, s3: S3Reader, uri: str, dest: Path, on_chunk: OnChunk | None) -> None:
        self.s3, self.uri, self.dest, self.on_chunk = s3, uri, dest, on_chunk
        self.bucket, self.prefix = split_uri(uri)
        self.partial = dest / PARTIAL_DIR
        self.result = Fetched()

    def one(self, wanted: schema.StoredFile, verified_sizes: dict[str, int]) -> None:
        final = self.dest / wanted.name
        if final.is_file() and final.stat().st_size == wanted.size and (
                verified_sizes.get(wanted.name) == wanted.size
                or _sha256(final) == wanted.sha256):
            self.result.present.append(wanted.name)
            return
        part = self.partial / f"{wanted.name}.part"
        offset = part.stat().st_size if part.is_file() else 0
        if offset > wanted.size:
            part.unlink()
            offset = 0
        self._download(wanted, part, offset)
        digest = _sha256(part)
        if digest != wanted.sha256 and offset > 0:
            part.unlink()
            offset = 0
            self._download(wanted, part, 0)
            digest = _sha256(part)
        if digest != wanted.sha256:
            part.unlink()
            raise Altered(f"{self.uri}{wanted.name}: sha256 {digest} differs from the "
                          f"recorded {wanted.sha256} (altered or corrupted in storage)")
        os.replace(part, final)
        (self.result.resumed if offset else self.result.copied).append(wanted.name)

    def _download(self, wanted: schema.StoredFile, part: Path, offset: int) -> None:
        key, where = self.prefix + wanted.name, f"{self.uri}{wanted.name}"
        if offset < wanted.size:
            extra = {"Range": f"bytes={offset}-"} if offset else {}
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
                self._stream(body, part, offset, wanted)
            except (BotoCoreError, ClientError) as exc:
                raise _s3_error(exc, where) from exc
        size = part.stat().st_size if part.is_file() else 0
        if size != wanted.size:
            part.unlink(missing_ok=True)
            raise Altered(f"{where}: {size} bytes in storage, {wanted.size} recorded at upload")

    def _stream(self, body: Any, part: Path, offset: int, wanted: schema.StoredFile) -> None:
        received = offset
        with part.open("ab" if offset else "wb") as fh:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                received += len(chunk)
                if received > wanted.size:
                    break
                fh.write(chunk)
                self.result.bytes_downloaded += len(chunk)
                if self.on_chunk is not None:
                    fh.flush()
                    self.on_chunk(wanted.name, received)
            fh.flush()
            os.fsync(fh.fileno())
        if received > wanted.size:
            part.unlink()
            raise Altered(f"{self.uri}{wanted.name}: longer than the {wanted.size} bytes "
                          "recorded at upload")


def _marker(files: Sequence[schema.StoredFile]) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in files]


def _verified_sizes(dest: Path, files: Sequence[schema.StoredFile]) -> dict[str, int]:
    """Sizes of the files a previous complete fetch verified, if it fetched the same list."""
    try:
        recorded = json.loads((dest / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if recorded != _marker(files):
        return {}
    return {f.name: f.size for f in files}


def fetch(s3: S3Reader, uri: str, dest: Path, files: Sequence[schema.StoredFile], *,
          on_chunk: OnChunk | None = None) -> Fetched:
    """Copy and verify every file of ``files`` from ``uri`` into ``dest``; see the module doc."""
    check_files(files)
    fetcher = _Fetcher(s3, uri, dest, on_chunk)
    try:
        fetcher.partial.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadRequest(f"cannot create {fetcher.partial}: {exc.strerror}") from exc
    verified = _verified_sizes(dest, files)
    (dest / MARKER_FILE).unlink(missing_ok=True)
    for wanted in files:
        fetcher.one(wanted, verified)
    (dest / MARKER_FILE).write_text(json.dumps(_marker(files)), encoding="utf-8")
    return fetcher.result
