"""The API's writes: each one a git commit in the specs repo (``llmops.engine.source.writeback``).

Role: the four routes that change something, all by committing to the specs
repo (``settings.git.repo``: a local clone, or a remote URL written through a
pushed mirror, see ``llmops.engine.source.push``) on a review branch
``llmops/<action>/<name>-<8 hex>``, or on the tracked branch when the
environment sets ``directCommits`` (see ``writeback`` for the rule on global
kinds). Each answers ``{commit, branch, direct, parent, file, reason}``:

- ``POST /serving/endpoints/{id}/rollback`` (``serving:rollback``): the
  endpoint's spec file back to its content before the applied change (from
  ``git log`` on the file, starting at the environment's last applied
  revision); 409 when there is nothing to roll back to;
- ``POST /prompts/experiments/{id}/conclude`` (``prompts:conclude``),
  ``{winnerTemplateId, notes}``: ``state: concluded``, ``winner``, ``notes``;
  a winner that is not a variant is a 422;
- ``POST /catalog/models/{id}/promote`` (``models:promote``), ``{stage}``;
- ``POST /catalog/models/{id}/upload?filename=...`` (``models:upload``): one
  model file as a raw ``application/octet-stream`` body with a
  ``Content-Length`` (411 without; 413 over ``settings.s3.max_file_bytes``),
  streamed to S3 under ``models/{name}/{version}/{file}`` in multipart parts
  while its sha256 and size are computed, then committed into the model's
  ``files`` and ``storageUri``. A failed upload leaves no object; a refused
  commit (e.g. a base model without ``config.json`` yet: upload that first)
  deletes the object again.

Each acts only on a spec owned by one of the caller's teams, unless the
caller holds ``*`` (``auth.authorize_owner``: 403, audited, before anything
else is written). Every write is audited: an ``intent`` row before anything happens, then
``succeeded`` (with the commit) or ``failed`` (with the reason), action
``write``, the spec as target. An edit that makes the repo invalid is a 422
listing every issue, and nothing is committed. Input: path, query and JSON
body; the store (catalog, status, audit log), the settings. Output:
``WriteOut`` in the envelope. Caller: ``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from llmops.api import errors, lookup
from llmops.api.auth import AUTH_RESPONSES, Principal, PrincipalDep, authorize_owner, require
from llmops.api.deps import AuditLogDep, SettingsDep, StoreDep
from llmops.api.envelope import ApiModel, Envelope, Failure, success
from llmops.engine.settings import Settings
from llmops.engine.source import writeback
from llmops.engine.spec import schema
from llmops.engine.spec.schema import ModelStage, Permission
from llmops.engine.store import audit, catalog, modelfiles, state
from llmops.engine.types import Kind, SpecKey

router = APIRouter(tags=["writes"], responses=AUTH_RESPONSES)

IdPath = Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                             description="The UUID or the name.")]
Environment = Annotated[str | None, Query(max_length=63, description="Narrows a name.")]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Failure, "description": "No such spec."},
    409: {"model": Failure, "description": "Nothing to change, or the spec moved in git."},
    422: {"model": Failure, "description": "The edit is invalid; data.issues lists why."},
    503: {"model": Failure, "description": "The specs repo (or S3) is unavailable."},
}


class Unprocessable(errors.ApiError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


class PayloadTooLarge(errors.ApiError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class LengthRequired(errors.ApiError):
    status_code = HTTPStatus.LENGTH_REQUIRED


class UnsupportedMediaType(errors.ApiError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


# --------------------------------------------------------------------------- models


class WriteOut(ApiModel):
    """The commit a write made and where it is."""

    commit: str
    branch: str
    direct: bool = Field(description="True: on the tracked branch; false: a review branch.")
    parent: str
    file: str
    reason: str = Field(description="Why the commit went to this branch.")

    @classmethod
    def of(cls, result: writeback.WriteResult) -> WriteOut:
        return cls(commit=result.commit, branch=result.branch, direct=result.direct,
                   parent=result.parent, file=result.file, reason=result.reason)


class UploadOut(WriteOut):
    object_uri: str
    sha256: str
    size: int


class ConcludeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    winnerTemplateId: str = Field(min_length=1, max_length=lookup.MAX_ID_CHARS,
                                  description="A variant's template: its name or UUID.")
    notes: str | None = Field(default=None, max_length=65536)


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: ModelStage


# --------------------------------------------------------------------------- plumbing


def _api_error(exc: Exception) -> errors.ApiError:
    """The HTTP error of an engine write or storage error."""
    message = str(exc)
    if isinstance(exc, writeback.EditRejected):
        return Unprocessable(message, {"issues": [i.as_dict() for i in exc.issues or ()]})
    if isinstance(exc, writeback.NothingToWrite | writeback.TargetMissing |
                  writeback.Conflicted):
        return errors.Conflict(message)
    if isinstance(exc, modelfiles.InvalidFileName):
        return Unprocessable(message)
    if isinstance(exc, modelfiles.TooLarge):
        return PayloadTooLarge(message)
    if isinstance(exc, modelfiles.LengthMismatch):
        return errors.BadRequest(message)
    return errors.ServiceUnavailable(message, {"retryable": True})


class _Audit:
    """The audit rows of one write: intent first, then the outcome."""

    def __init__(self, log: audit.AuditLog, principal: Principal, key: SpecKey,
                 reason: str) -> None:
        self.log, self.principal, self.key, self.reason = log, principal, key, reason
        self._entry(audit.AuditResult.INTENT, reason, {})

    def _entry(self, result: audit.AuditResult, reason: str, details: dict[str, Any],
               commit: str = "") -> None:
        self.log.append(audit.AuditEntry(
            actor=self.principal.user, action=audit.AuditAction.WRITE, target=str(self.key),
            environment=self.key.environment, result=result, source_commit=commit,
            reason=reason[:1000], details={"specId": str(self.key.id), **details}))

    def failed(self, exc: BaseException) -> None:
        self._entry(audit.AuditResult.FAILED, f"{self.reason}: {exc}"[:1000]
                    if str(exc) else f"{self.reason}: {type(exc).__name__}", {})

    def succeeded(self, result: writeback.WriteResult, **details: Any) -> None:
        self._entry(audit.AuditResult.SUCCEEDED, self.reason,
                    {"branch": result.branch, "direct": result.direct, "file": result.file,
                     "parent": result.parent, **details}, commit=result.commit)


def _commit(settings: Settings, trail: _Audit, entry: catalog.CatalogEntry, action: str,
            edit: Callable[[writeback.Target], writeback.Edit], subject: str,
            body: str = "") -> writeback.WriteResult:
    """Audited ``writeback.commit_edit`` of ``entry``'s file; errors become HTTP errors."""
    target = writeback.Target(kind=entry.kind, name=entry.base_name, file=entry.file,
                              environment=entry.environment)
    message = (f"{subject}\n\n{body + chr(10) + chr(10) if body else ''}"
               f"Llmops-Action: {action}\nLlmops-Spec: {entry.key}\n"
               f"Llmops-Requested-By: {' '.join(trail.principal.user.split())}\n")
    try:
        repo = writeback.repo_for(settings)
        result = writeback.commit_edit(repo, settings.git.branch, target, edit(target),
                                       action=action,
                                       author=writeback.Author(trail.principal.user),
                                       message=message)
    except writeback.WriteError as exc:
        trail.failed(exc)
        raise _api_error(exc) from None
    except Exception as exc:
        trail.failed(exc)
        raise
    trail.succeeded(result)
    return result


# --------------------------------------------------------------------------- rollback


@router.post("/serving/endpoints/{endpoint_id}/rollback", response_model=Envelope[WriteOut],
             summary="Roll an endpoint back to its previous spec (a commit)",
             dependencies=[require(Permission.SERVING_ROLLBACK)], responses=WRITE_RESPONSES)
def rollback_endpoint(http: Request, store: StoreDep, settings: SettingsDep, log: AuditLogDep,
                      principal: PrincipalDep, endpoint_id: IdPath,
                      environment: Environment = None) -> Envelope[WriteOut]:
    """The endpoint's spec file as it was before the change now applied, committed."""
    entry = lookup.one(store, Kind.SERVING_ENDPOINT, endpoint_id, environment=environment)
    authorize_owner(http, store, log, principal, entry)
    status = state.get_environment_status(store, entry.environment)
    applied = (status.last_applied_revision if status is not None else "") or entry.revision
    trail = _Audit(log, principal, entry.key, f"rollback from {applied[:12]}")
    target = writeback.Target(kind=entry.kind, name=entry.name, file=entry.file,
                              environment=entry.environment)
    try:
        repo = writeback.repo_for(settings)
        previous = writeback.previous_version(repo, target, applied, settings.git.branch)
    except writeback.WriteError as exc:
        trail.failed(exc)
        raise _api_error(exc) from None
    trail.reason = (f"rollback from {applied[:12]} to {previous.revision[:12]} "
                    f"(undoes {previous.changed_by[:12]})")
    result = _commit(
        settings, trail, entry, "rollback", lambda _t: writeback.restore(previous),
        f"Roll back {entry.kind} {entry.environment}/{entry.name} to {previous.revision[:12]}",
        f"Restores {entry.file} as it was before {previous.changed_by}\n"
        f"(applied revision {applied}).")
    return success(WriteOut.of(result), f"rollback of {entry.name} committed to "
                                        f"{result.branch}")


# --------------------------------------------------------------------------- conclude


def _winner_name(store: StoreDep, ident: str) -> str:
    parsed = lookup.as_uuid(ident)
    if parsed is None:
        return ident
    found = catalog.get(store, str(parsed))
    if found is None or found.kind != Kind.PROMPT_TEMPLATE:
        raise Unprocessable(f"winnerTemplateId {ident!r} is not a prompt template",
                            {"field": "winnerTemplateId"})
    return found.name


@router.post("/prompts/experiments/{experiment_id}/conclude", response_model=Envelope[WriteOut],
             summary="Conclude an experiment with its winner (a commit)",
             dependencies=[require(Permission.PROMPTS_CONCLUDE)], responses=WRITE_RESPONSES)
def conclude_experiment(http: Request, store: StoreDep, settings: SettingsDep,
                        log: AuditLogDep, principal: PrincipalDep, experiment_id: IdPath,
                        request: ConcludeRequest,
                        environment: Environment = None) -> Envelope[WriteOut]:
    """``state: concluded``, the winner (one of the variants) and the notes, committed."""
    entry = lookup.one(store, Kind.PROMPT_EXPERIMENT, experiment_id, environment=environment)
    authorize_owner(http, store, log, principal, entry)
    winner = _winner_name(store, request.winnerTemplateId)
    trail = _Audit(log, principal, entry.key, f"conclude with winner {winner[:80]}")
    result = _commit(
        settings, trail, entry, "conclude",
        lambda t: writeback.conclude_experiment(t.name, winner, request.notes),
        f"Conclude experiment {entry.environment}/{entry.name}: {winner} wins")
    return success(WriteOut.of(result), f"conclusion of {entry.name} committed to "
                                        f"{result.branch}")


# --------------------------------------------------------------------------- promote


def _model(store: StoreDep, model_id: str) -> catalog.CatalogEntry:
    """One model version: a UUID or ``name@version`` (a bare name is ambiguous: 409)."""
    return lookup.one(store, Kind.MODEL, model_id)


@router.post("/catalog/models/{model_id}/promote", response_model=Envelope[WriteOut],
             summary="Change a model's stage (a commit)",
             dependencies=[require(Permission.MODELS_PROMOTE)], responses=WRITE_RESPONSES)
def promote_model(http: Request, store: StoreDep, settings: SettingsDep, log: AuditLogDep,
                  principal: PrincipalDep, model_id: IdPath,
                  request: PromoteRequest) -> Envelope[WriteOut]:
    """The model version's ``stage`` set to ``stage``, committed."""
    entry = _model(store, model_id)
    authorize_owner(http, store, log, principal, entry)
    version = str(entry.body.get("version", ""))
    old = str(entry.body.get("stage", ""))
    trail = _Audit(log, principal, entry.key, f"stage {old} -> {request.stage.value}")
    result = _commit(settings, trail, entry, "promote",
                     lambda t: writeback.set_model_stage(t.name, version, request.stage),
                     f"Set model {entry.name} stage to {request.stage.value}")
    return success(WriteOut.of(result), f"stage change of {entry.name} committed to "
                                        f"{result.branch}")


# --------------------------------------------------------------------------- upload


def _declared_length(request: Request, limit: int) -> int:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/octet-stream":
        raise UnsupportedMediaType("send the file as the raw body, Content-Type: "
                                   "application/octet-stream")
    raw = request.headers.get("content-length")
    if raw is None:
        raise LengthRequired("Content-Length is required for an upload")
    if not raw.strip().isdigit():
        raise errors.BadRequest("Content-Length is not a number")
    length = int(raw)
    if length > limit:
        raise PayloadTooLarge(f"the file is {length} bytes, over the limit of {limit} bytes",
                              {"maxFileBytes": limit})
    return length


async def _stream_to_s3(request: Request, upload: modelfiles.Upload) -> modelfiles.Stored:
    """Feed the body to ``upload`` part by part; abort on any failure (incl. disconnects)."""
    done = False
    try:
        await anyio.to_thread.run_sync(upload.start)
        async for chunk in request.stream():
            upload.write(chunk)
            if upload.part_ready:
                await anyio.to_thread.run_sync(upload.flush)
        stored = await anyio.to_thread.run_sync(upload.finish)
        done = True
        return stored
    finally:
        if not done:
            await anyio.to_thread.run_sync(upload.abort)


@router.post("/catalog/models/{model_id}/upload", response_model=Envelope[UploadOut],
             summary="Upload one model file to S3 and record it (a commit)",
             dependencies=[require(Permission.MODELS_UPLOAD)],
             responses={**WRITE_RESPONSES,
                        411: {"model": Failure, "description": "No Content-Length."},
                        413: {"model": Failure, "description": "The file is too large."},
                        415: {"model": Failure, "description": "Not octet-stream."}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string",
                                                         "format": "binary"}}}}})
async def upload_model_file(
    request: Request, store: StoreDep, settings: SettingsDep, log: AuditLogDep,
    principal: PrincipalDep, model_id: IdPath,
    filename: Annotated[str, Query(min_length=1, max_length=200,
                                   description="The file's name, e.g. config.json.")],
) -> Envelope[UploadOut]:
    """Stream the body to ``models/{name}/{version}/{filename}``, then commit it to ``files``."""
    try:
        file_name = modelfiles.check_file_name(filename)
    except modelfiles.InvalidFileName as exc:
        raise _api_error(exc) from None
    cfg = settings.s3
    length = _declared_length(request, cfg.max_file_bytes)
    entry = await anyio.to_thread.run_sync(_model, store, model_id)
    await anyio.to_thread.run_sync(authorize_owner, request, store, log, principal, entry)
    name, version = entry.base_name, str(entry.body.get("version", ""))
    try:
        key = modelfiles.object_key(name, version, file_name)
        repo = writeback.repo_for(settings)
    except (modelfiles.ModelFileError, writeback.WriteError) as exc:
        raise _api_error(exc) from None
    trail = await anyio.to_thread.run_sync(
        _Audit, log, principal, entry.key, f"upload {file_name} ({length} bytes)")
    s3 = modelfiles.client(cfg)
    upload = modelfiles.Upload(s3, cfg.bucket, key, expected_size=length,
                               max_bytes=cfg.max_file_bytes, part_size=cfg.part_size_bytes)
    try:
        stored = await _stream_to_s3(request, upload)
    except modelfiles.ModelFileError as exc:
        await anyio.to_thread.run_sync(trail.failed, exc)
        raise _api_error(exc) from None
    except BaseException as exc:
        await anyio.to_thread.run_sync(trail.failed, exc)
        raise
    uri = modelfiles.storage_uri(cfg.bucket, name, version)
    record = schema.ModelFile(name=file_name, sha256=stored.sha256, size=stored.size)
    target = writeback.Target(kind=entry.kind, name=name, file=entry.file)
    message = (f"Record {file_name} of model {entry.name}\n\n"
               f"{stored.uri}\nsha256 {stored.sha256}, {stored.size} bytes\n\n"
               f"Llmops-Action: upload\nLlmops-Spec: {entry.key}\n"
               f"Llmops-Requested-By: {' '.join(principal.user.split())}\n")

    def commit() -> writeback.WriteResult:
        return writeback.commit_edit(
            repo, settings.git.branch, target,
            writeback.record_model_file(name, version, uri, record), action="upload",
            author=writeback.Author(principal.user), message=message)

    try:
        result = await anyio.to_thread.run_sync(commit)
    except BaseException as exc:
        # No commit: the object must not stay either.
        try:
            await anyio.to_thread.run_sync(modelfiles.delete, s3, stored)
        finally:
            await anyio.to_thread.run_sync(trail.failed, exc)
        if isinstance(exc, writeback.WriteError):
            raise _api_error(exc) from None
        raise
    await anyio.to_thread.run_sync(
        lambda: trail.succeeded(result, object=stored.uri, sha256=stored.sha256,
                                size=stored.size))
    out = UploadOut(**dict(WriteOut.of(result)), object_uri=stored.uri, sha256=stored.sha256,
                    size=stored.size)
    return success(out, f"{file_name} uploaded and recorded on {result.branch}")
