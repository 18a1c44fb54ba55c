"""Model files in S3: safe object keys and a streaming multipart upload that cleans up after itself.

Role: store one model file under ``models/{name}/{version}/{file}`` of the
model bucket without ever holding it whole in memory: bytes arrive in
chunks (``Upload.write``), are hashed (sha256) and counted as they come, and
leave in parts of ``part_size`` bytes (S3 multipart upload: create, upload
part, complete). Any error, an over-size body or a body whose length differs
from the one announced aborts the multipart upload, so no object and no
parts are left behind; ``delete`` removes a completed object whose commit was
refused. Input: a boto3 S3 client, the bucket, the validated model name,
version and file name, the announced size. Output: ``Stored`` (key, URI,
sha256, size). Callers: ``llmops.api.routes.writes`` (the upload route feeds
``Upload`` from the request stream, one part at a time in a worker thread).

Keys are built only from values that pass ``check_file_name``, the DNS label
of the model name and the semver of its version: no ``..``, no ``/``, no
percent-escapes or unicode look-alikes can reach a key (fault cases 34-35).
A key is never overwritten: the upload completes with ``If-None-Match: *``, so an
object that appeared at the key meanwhile stays and the upload is refused
(``ObjectExists``). If S3 itself is unreachable while aborting, the incomplete upload stays
invisible (it is no object) until the bucket's ``AbortIncompleteMultipartUpload``
lifecycle rule removes it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from llmops.engine import errors
from llmops.engine.settings import S3Settings
from llmops.engine.spec import schema

PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
"""S3's smallest part (all but the last)."""
_FILE = re.compile(schema.MODEL_FILE_RE, re.ASCII)
_NAME = re.compile(schema.DNS_LABEL_RE, re.ASCII)
_VERSION = re.compile(schema.SEMVER_RE, re.ASCII)
S3_ERRORS = (BotoCoreError, ClientError)


class ModelFileError(errors.LlmopsError):
    """A model file could not be stored; nothing was left in the bucket."""


class InvalidFileName(ModelFileError, errors.InvalidInput):
    """The file name (or model name/version) cannot make a safe key."""


class TooLarge(ModelFileError, errors.TooLarge):
    """The body is over the size limit."""


class LengthMismatch(ModelFileError, errors.Malformed):
    """The body is shorter or longer than its ``Content-Length``."""


class ObjectExists(ModelFileError, errors.Conflict):
    """An object appeared at the key while uploading; keys are never overwritten."""


class StorageUnavailable(ModelFileError, errors.Unavailable):
    """S3 failed or could not be reached (retryable)."""


class S3Client(Protocol):
    """The part of boto3's S3 client used here."""

    def create_multipart_upload(self, **kwargs: Any) -> Any: ...
    def upload_part(self, **kwargs: Any) -> Any: ...
    def complete_multipart_upload(self, **kwargs: Any) -> Any: ...
    def abort_multipart_upload(self, **kwargs: Any) -> Any: ...
    def delete_object(self, **kwargs: Any) -> Any: ...
    def head_object(self, **kwargs: Any) -> Any: ...
    def get_object(self, **kwargs: Any) -> Any: ...


def client(settings: S3Settings) -> S3Client:
    """A boto3 S3 client for ``settings`` (credentials from the usual AWS sources)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=settings.connect_timeout_seconds,
                    read_timeout=settings.read_timeout_seconds,
                    retries={"max_attempts": settings.max_attempts, "mode": "standard"},
                    s3={"addressing_style": "path"} if settings.endpoint_url else None)
    s3: S3Client = boto3.client("s3", endpoint_url=settings.endpoint_url or None,
                                region_name=settings.region, config=config)
    return s3


def check_file_name(name: str) -> str:
    """``name`` if it is a plain model file name with an allowed extension; else raise."""
    shown = repr(name[:80])
    if not _FILE.fullmatch(name) or ".." in name:
        raise InvalidFileName(f"file name {shown} must match {schema.MODEL_FILE_RE} "
                              "and contain no '..'")
    if not name.endswith(schema.MODEL_FILE_EXTENSIONS):
        raise InvalidFileName(f"file name {shown} has a disallowed extension (allowed: "
                              f"{' '.join(schema.MODEL_FILE_EXTENSIONS)})")
    return name


def model_prefix(name: str, version: str) -> str:
    """``models/{name}/{version}/`` from a validated model name and version."""
    if not _NAME.fullmatch(name) or not _VERSION.fullmatch(version):
        raise InvalidFileName(f"model {name[:80]!r} version {version[:40]!r} cannot make "
                              "a safe key")
    return f"models/{name}/{version}/"


def object_key(name: str, version: str, file_name: str) -> str:
    return model_prefix(name, version) + check_file_name(file_name)


def storage_uri(bucket: str, name: str, version: str) -> str:
    return f"s3://{bucket}/{model_prefix(name, version)}"


@dataclass(frozen=True, slots=True)
class Stored:
    bucket: str
    key: str
    sha256: str
    size: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _unavailable(action: str, exc: BotoCoreError | ClientError) -> StorageUnavailable:
    # botocore errors name the endpoint and the operation, never credentials.
    return StorageUnavailable(f"S3 {action} failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}")


class Upload:
    """One multipart upload fed chunk by chunk; ``finish`` or ``abort`` it.

    ``write`` only buffers and hashes (cheap, no I/O); when ``part_ready`` is
    true the caller runs ``flush`` (network I/O, in a worker thread for an
    async caller). ``finish`` checks the size against ``expected_size``,
    sends the last part and completes. Every failure aborts before raising.
    """

    def __init__(self, s3: S3Client, bucket: str, key: str, *, expected_size: int | None,
                 max_bytes: int = schema.MAX_MODEL_FILE_BYTES, part_size: int = PART_SIZE) -> None:
        if part_size < 1:
            raise ValueError("part_size must be positive")
        if expected_size is not None and expected_size > max_bytes:
            raise TooLarge(f"{key.rsplit('/', 1)[-1]}: {expected_size} bytes is over the "
                           f"limit of {max_bytes} bytes")
        self.s3, self.bucket, self.key = s3, bucket, key
        self.expected_size, self.max_bytes, self.part_size = expected_size, max_bytes, part_size
        self.size = 0
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._closed = False

    # -- lifecycle

    def start(self) -> None:
        try:
            answer = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/octet-stream")
        except S3_ERRORS as exc:
            self._closed = True
            raise _unavailable("create multipart upload", exc) from None
        self._upload_id = str(answer["UploadId"])

    def write(self, chunk: bytes) -> None:
        """Hash, count and buffer ``chunk``; over the limits aborts and raises."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.abort()
            raise TooLarge(f"body is over the limit of {self.max_bytes} bytes")
        if self.expected_size is not None and self.size > self.expected_size:
            self.abort()
            raise LengthMismatch(f"body is longer than its Content-Length "
                                 f"({self.expected_size})")
        self._hash.update(chunk)
        self._buffer += chunk

    @property
    def part_ready(self) -> bool:
        return len(self._buffer) >= self.part_size

    def flush(self, *, final: bool = False) -> None:
        """Send full parts (and, when ``final``, what is left) to S3."""
        while len(self._buffer) >= self.part_size or (final and self._buffer):
            data = bytes(self._buffer[:self.part_size])
            del self._buffer[:self.part_size]
            number = len(self._parts) + 1
            try:
                answer = self.s3.upload_part(Bucket=self.bucket, Key=self.key,
                                             UploadId=self._require_id(), PartNumber=number,
                                             Body=data)
            except S3_ERRORS as exc:
                self.abort()
                raise _unavailable(f"upload of part {number}", exc) from None
            self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def finish(self) -> Stored:
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise LengthMismatch(f"body is {self.size} bytes, its Content-Length says "
                                 f"{self.expected_size}")
        if self._buffer:
            self.flush(final=True)
        elif not self._parts:
            self._empty_part()  # an empty file is one empty part
        try:  # If-None-Match: an object that appeared at the key meanwhile is kept
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._require_id(),
                MultipartUpload={"Parts": self._parts}, IfNoneMatch="*")
        except ClientError as exc:
            self.abort()
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise ObjectExists(f"s3://{self.bucket}/{self.key} appeared while uploading "
                                   "and is never overwritten") from None
            raise _unavailable("completing the multipart upload", exc) from None
        except BotoCoreError as exc:
            self.abort()
            raise _unavailable("completing the multipart upload", exc) from None
        self._closed = True
        return Stored(bucket=self.bucket, key=self.key, sha256=self._hash.hexdigest(),
                      size=self.size)

    def abort(self) -> None:
        """Drop the multipart upload and its parts (best effort; never raises)."""
        if self._closed:
            return
        self._closed = True
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                           UploadId=self._upload_id)
        except S3_ERRORS:
            return  # S3 down: the incomplete upload is no object; the lifecycle rule ends it

    # -- helpers

    def _empty_part(self) -> None:
        try:
            answer = self.s3.upload_part(Bucket=self.bucket, Key=self.key,
                                         UploadId=self._require_id(), PartNumber=1, Body=b"")
        except S3_ERRORS as exc:
            self.abort()
            raise _unavailable("upload of part 1", exc) from None
        self._parts.append({"PartNumber": 1, "ETag": answer["ETag"]})

    def _require_id(self) -> str:
        if self._upload_id is None or self._closed:
            raise ModelFileError("the upload is not started or already finished")
        return self._upload_id


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def exists(s3: S3Client, bucket: str, key: str) -> bool:
    """Whether an object is at ``key`` (keys are never overwritten); S3 down is raised."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _unavailable(f"checking {key}", exc) from None
    except BotoCoreError as exc:
        raise _unavailable(f"checking {key}", exc) from None
    return True


def delete(s3: S3Client, stored: Stored) -> None:
    """Remove a completed object (its commit was refused); raise when S3 refuses."""
    try:
        s3.delete_object(Bucket=stored.bucket, Key=stored.key)
    except S3_ERRORS as exc:
        raise _unavailable(f"deleting {stored.key}", exc) from None
