"""Model file uploads: one or several files of a model version to S3, then one commit.

Role: the upload use case behind ``POST /catalog/models/{id}/upload``. An
``UploadBatch`` takes the files of one call (a raw body is one file, a
multipart body several), streams each to the version's own prefix
``models/{name}/{version}/{file}`` (``store.modelfiles``: multipart upload,
sha256 and size counted while it streams) and, once every file is stored,
records them all in the Model spec's ``files`` (name, sha256, size) and
``storageUri`` with one commit (``WriteService``: review branch or direct,
audited, stacked on the version's open review branch, so files sent in
several calls gather on one branch before review).

Integrity rules, checked before a byte is stored:

- a version that is ``approved`` or ``deprecated``, or that an endpoint of a
  protected environment (``PROTECTED_ENVIRONMENTS``) serves, is immutable:
  ``VersionImmutable`` (a ``Conflict``); a changed file needs a new version;
- a file already recorded for the version, or an object already at its key,
  is never replaced: ``FileExists`` (a ``Conflict``);
- a version whose files live under another ``storageUri`` keeps it: new
  files there would be split across two places (``FileExists`` too);
- names, extensions and the size limit as ``store.modelfiles`` checks them;
  ``config.json`` for base and fine-tuned models by the spec's validation at
  commit time (the commit is then refused and the stored objects deleted).

A failure at any point (a disconnect too) aborts the file in flight and
deletes the files of the call already stored: no object outlives a refused
or failed call. Input: the write service, the caller, the model's id.
Output: ``Uploaded``. Callers: ``llmops.api.routes.writes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from llmops.engine import errors
from llmops.engine.service.access import Caller
from llmops.engine.service.writes import Committed, Trail, WriteService
from llmops.engine.source import specedits, writeback
from llmops.engine.spec import schema
from llmops.engine.store import catalog, modelfiles
from llmops.engine.types import Kind

PROTECTED_ENVIRONMENTS = ("stg", "prod")
"""Environments whose endpoints pin the files of the model version they serve."""
MAX_FILES_PER_CALL = 64
LOCKED_STAGES = (schema.ModelStage.APPROVED.value, schema.ModelStage.DEPRECATED.value)


class VersionImmutable(errors.Conflict):
    """The model version is approved (or served in a protected environment)."""


class FileExists(errors.Conflict):
    """The file is already recorded or stored for this version."""


class FileTooLarge(errors.TooLarge):
    """The announced file size is over ``settings.s3.max_file_bytes``."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    object_uri: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Uploaded(Committed):
    """The files of one call, stored and recorded by one commit."""

    storage_uri: str
    files: tuple[StoredFile, ...]


def check_file_name(file_name: str) -> str:
    """``file_name`` if it can name a model file; else ``InvalidInput``."""
    return modelfiles.check_file_name(file_name)


def _served_in(store: catalog.Db, entry: catalog.CatalogEntry) -> list[str]:
    """Protected environments with an endpoint on this model version."""
    version = str(entry.body.get("version", ""))
    return sorted({e.environment for e in catalog.list_entries(store,
                                                               kind=Kind.SERVING_ENDPOINT)
                   if e.environment in PROTECTED_ENVIRONMENTS
                   and (e.body.get("modelRef") or {}).get("name") == entry.base_name
                   and str((e.body.get("modelRef") or {}).get("version")) == version})


def check_mutable(store: catalog.Db, entry: catalog.CatalogEntry, storage_uri: str) -> None:
    """``VersionImmutable`` / ``FileExists`` when the version must not take new files."""
    stage = str(entry.body.get("stage", schema.ModelStage.DRAFT.value))
    if stage in LOCKED_STAGES:
        raise VersionImmutable(f"model {entry.name} is {stage}: its files are immutable; "
                               "upload changed files as a new version",
                               details={"stage": stage})
    served = _served_in(store, entry)
    if served:
        raise VersionImmutable(f"model {entry.name} is served in {', '.join(served)}: its "
                               "files are immutable; upload changed files as a new version",
                               details={"environments": served})
    current = str(entry.body.get("storageUri", ""))
    if entry.body.get("files") and current and current != storage_uri:
        raise FileExists(f"model {entry.name} keeps its files under {current}; files "
                         f"under {storage_uri} need a new version",
                         details={"storageUri": current})


class UploadBatch:
    """The files of one upload call: ``open`` a file, ``write``/``flush`` its chunks,
    ``close`` it; then ``finish`` (one commit) or ``fail`` (nothing stays).

    ``write`` only hashes and buffers; ``open``, ``flush``, ``close``,
    ``finish`` and ``fail`` do network I/O (a worker thread for an async caller).
    """

    def __init__(self, service: WriteService, trail: Trail, entry: catalog.CatalogEntry,
                 repo: writeback.Repo) -> None:
        self._service, self._trail, self._entry, self._repo = service, trail, entry, repo
        self._cfg = service.settings.s3
        self._s3 = modelfiles.client(self._cfg)
        self._version = str(entry.body.get("version", ""))
        self._recorded = {str(f.get("name")) for f in entry.body.get("files") or []
                          if isinstance(f, dict)}
        self._stored: list[modelfiles.Stored] = []
        self._names: list[str] = []
        self._current: modelfiles.Upload | None = None
        self.storage_uri = modelfiles.storage_uri(self._cfg.bucket, entry.base_name,
                                                  self._version)

    @property
    def part_ready(self) -> bool:
        return self._current is not None and self._current.part_ready

    def open(self, file_name: str, length: int | None = None) -> None:
        """Start storing ``file_name`` (``length`` bytes when known); refusals first."""
        name = modelfiles.check_file_name(file_name)
        if length is not None and length > self._cfg.max_file_bytes:
            raise FileTooLarge(f"{name} is {length} bytes, over the limit of "
                               f"{self._cfg.max_file_bytes} bytes",
                               details={"maxFileBytes": self._cfg.max_file_bytes})
        if len(self._names) >= MAX_FILES_PER_CALL:
            raise errors.TooLarge(f"at most {MAX_FILES_PER_CALL} files per call")
        if name in self._recorded or name in self._names:
            raise FileExists(f"{name} is already recorded for model {self._entry.name}; a "
                             "changed file needs a new version", details={"file": name})
        key = modelfiles.object_key(self._entry.base_name, self._version, name)
        if modelfiles.exists(self._s3, self._cfg.bucket, key):
            raise FileExists(f"s3://{self._cfg.bucket}/{key} already exists and is never "
                             "overwritten; a changed file needs a new version",
                             details={"file": name})
        upload = modelfiles.Upload(self._s3, self._cfg.bucket, key, expected_size=length,
                                   max_bytes=self._cfg.max_file_bytes,
                                   part_size=self._cfg.part_size_bytes)
        upload.start()
        self._current = upload
        self._names.append(name)

    def write(self, chunk: bytes) -> None:
        self._require().write(chunk)

    def flush(self) -> None:
        self._require().flush()

    def close(self) -> None:
        """Complete the file in flight."""
        self._stored.append(self._require().finish())
        self._current = None

    def _require(self) -> modelfiles.Upload:
        if self._current is None:
            raise modelfiles.ModelFileError("no file is open in this upload")
        return self._current

    def fail(self, exc: BaseException) -> None:
        """Abort the file in flight, delete the stored ones, audit ``exc`` as the outcome."""
        try:
            if self._current is not None:
                self._current.abort()
            for stored in self._stored:
                modelfiles.delete(self._s3, stored)
        finally:
            self._stored.clear()
            self._trail.failed(exc)

    def finish(self) -> Uploaded:
        """Record every stored file in the model spec with one commit."""
        if self._current is not None or not self._stored:
            exc = errors.InvalidInput("the upload holds no complete file")
            self.fail(exc)
            raise exc
        records = [schema.ModelFile(name=name, sha256=s.sha256, size=s.size)
                   for name, s in zip(self._names, self._stored, strict=True)]
        entry, names = self._entry, ", ".join(self._names)
        try:
            result = self._service._commit_edit(
                self._repo, self._trail.caller, entry, "upload",
                lambda _t: specedits.record_model_files(entry.base_name, self._version,
                                                        self.storage_uri, records),
                f"Record {names[:120]} of model {entry.name}",
                "\n".join(f"{s.uri}\nsha256 {s.sha256}, {s.size} bytes" for s in self._stored))
        except BaseException as exc:
            self.fail(exc)
            raise
        files = tuple(StoredFile(name, s.uri, s.sha256, s.size)
                      for name, s in zip(self._names, self._stored, strict=True))
        self._trail.succeeded(result, objects=[f.object_uri for f in files],
                              files=[{"name": f.name, "sha256": f.sha256, "size": f.size}
                                     for f in files])
        return Uploaded(**asdict(result), name=entry.name, storage_uri=self.storage_uri,
                        files=files)


def begin(service: WriteService, caller: Caller, model_id: str, summary: str,
          length: int | None = None) -> UploadBatch:
    """An upload batch for the model version ``model_id``, audited; refusals come before
    any audit row or byte (an announced ``length`` over the limit, the model, its owner,
    its mutability, the repo)."""
    limit = service.settings.s3.max_file_bytes
    if length is not None and length > limit:
        raise FileTooLarge(f"the file is {length} bytes, over the limit of {limit} bytes",
                           details={"maxFileBytes": limit})
    entry = service.find_for(caller, Kind.MODEL, model_id)
    check_mutable(service.store, entry, modelfiles.storage_uri(
        service.settings.s3.bucket, entry.base_name, str(entry.body.get("version", ""))))
    repo = writeback.repo_for(service.settings)
    trail = Trail(service.log, caller, entry.key, f"upload {summary}"[:500])
    return UploadBatch(service, trail, entry, repo)
