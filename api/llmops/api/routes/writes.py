"""The API's writes: thin adapters over the write use cases (``WriteService``).

Role: the four routes that change something; each parses the request, calls
one method of ``llmops.engine.service.writes.WriteService`` (which commits
to the specs repo, audits intent and outcome, and applies the tenant rule)
and shapes the envelope. Each answers ``{commit, branch, direct, parent,
file, reason, notes}`` (``notes``: what the policy check said, e.g. that
applying waits for a change window):

- ``POST /serving/endpoints/{id}/rollback`` (``serving:rollback``): the
  endpoint's spec file back to its content before the applied change; 409
  when there is nothing to roll back to;
- ``POST /prompts/experiments/{id}/conclude`` (``prompts:conclude``),
  ``{winnerTemplateId, notes}``: ``state: concluded``, ``winner``, ``notes``;
  a winner that is not one of its variants is a 409 (the experiment decides);
- ``POST /catalog/models/{id}/promote`` (``models:promote``), ``{stage}``;
- ``POST /catalog/models/{id}/upload`` (``models:upload``): the seed's
  ``multipart/form-data`` with one or more ``files`` parts, or one raw
  ``application/octet-stream`` body named by ``?filename=`` with a
  ``Content-Length`` (415 for another type, 411 without a length; 413 over
  ``settings.s3.max_file_bytes``), streamed by ``llmops.api.uploads`` into
  an ``UploadBatch`` (``llmops.engine.service.uploads``: S3 multipart parts
  sent from a worker thread, integrity rules first), then recorded in the
  model's ``files`` and ``storageUri`` by one commit. A failed upload (a
  disconnect included) leaves no object; a refused commit deletes them. The
  answer (``UploadOut``) adds ``storageUri`` and ``files`` (every file of the
  call) to the commit; a one-file call also has that file's ``objectUri``,
  ``sha256`` and ``size`` at the top (the seed's shape), several files only
  in ``files``.

Errors are the engine's categories, mapped to statuses once by
``llmops.api.errors`` (404 no such spec, 409 nothing to change, the spec
moved, the repo as it stands does not take the edit (``data.issues``) or no
specs repo is configured, 422 an invalid request field, 403 not the owner or
a policy denies the edit (``data.verdicts``), 503 the specs repo or S3
unavailable). Input: path, query and JSON body, the caller
(``CallerDep``), the write service (``WritesDep``). Output: ``WriteOut`` /
``UploadOut`` in the envelope. Caller: ``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from llmops.api import errors, lookup, uploads
from llmops.api.auth import AUTH_RESPONSES, CallerDep, require
from llmops.api.deps import WritesDep
from llmops.api.envelope import ApiModel, Envelope, Failure, success
from llmops.engine.service import uploads as service_uploads
from llmops.engine.service.access import Caller
from llmops.engine.service.writes import Committed, WriteService
from llmops.engine.spec import schema
from llmops.engine.spec.schema import ModelStage, Permission

router = APIRouter(tags=["writes"], responses=AUTH_RESPONSES)

IdPath = Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                             description="The UUID or the name.")]
Environment = Annotated[str | None, Query(max_length=63, description="Narrows a name.")]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": Failure, "description": "The principal lacks the permission, no team of "
                                           "theirs owns the spec, or a policy denies the "
                                           "edit (data.verdicts: rule, environment, target, "
                                           "reason); nothing was committed."},
    404: {"model": Failure, "description": "No such spec, or the environment the request "
                                           "names is not declared in llmops.yaml "
                                           "(data.field names the request field)."},
    409: {"model": Failure, "description": (
        "Nothing to change, the spec moved in git, the request clashes with the spec as it "
        "stands (e.g. a winner that is not a variant), or the specs repo as it stands does "
        "not take the edit: data.field names the request field, data.issues the file, "
        "line and field of each issue (e.g. a base model that is only on another, "
        "unmerged review branch, a route another endpoint serves, replicas whose min is "
        "above their max, weights that do not sum to 100). Also: no specs repo is "
        "configured (settings.git.repo), an optional part this server runs without.")},
    422: {"model": Failure, "description": "A request field is invalid; data names it."},
    503: {"model": Failure, "description": "The specs repo (or S3) is configured but "
                                           "unavailable; retry later."},
}


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
    notes: list[str] = Field(description="What the policy check says about applying the "
                                         "commit, e.g. that it waits for a change window "
                                         "(windows gate applying, not proposing).")

    @classmethod
    def of(cls, done: Committed) -> WriteOut:
        return cls(commit=done.commit, branch=done.branch, direct=done.direct,
                   parent=done.parent, file=done.file, reason=done.reason,
                   notes=list(done.notes))


class StoredFileOut(ApiModel):
    name: str
    object_uri: str = Field(description="The file's object, s3://bucket/models/...")
    sha256: str
    size: int = Field(description="Bytes.")


class UploadOut(WriteOut):
    """The commit that records the call's files (``commit``, ``branch``, ...), the
    version's ``storageUri`` and every file of the call in ``files``. A one-file call
    (a raw body, or one ``files`` part) also carries that file's ``objectUri``,
    ``sha256`` and ``size`` at the top, as the seed answered; a call of several files
    has them only in ``files``."""

    storage_uri: str = Field(description="The model version's prefix, s3://bucket/models/"
                                         "{name}/{version}/.")
    files: list[StoredFileOut] = Field(description="Every file of the call, as recorded, "
                                                   "in the order sent.")
    object_uri: str | None = Field(default=None, description="One-file calls only: the "
                                                             "file's object.")
    sha256: str | None = Field(default=None, description="One-file calls only.")
    size: int | None = Field(default=None, description="One-file calls only.")

    @classmethod
    def of_upload(cls, done: service_uploads.Uploaded) -> UploadOut:
        files = [StoredFileOut(name=f.name, object_uri=f.object_uri, sha256=f.sha256,
                               size=f.size) for f in done.files]
        only = dict(files[0]) if len(files) == 1 else {}
        return cls(**dict(WriteOut.of(done)), storage_uri=done.storage_uri, files=files,
                   object_uri=only.get("object_uri"), sha256=only.get("sha256"),
                   size=only.get("size"))


class ConcludeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    winnerTemplateId: str = Field(min_length=1, max_length=lookup.MAX_ID_CHARS,
                                  description="A variant's template: its name or UUID.")
    notes: str | None = Field(default=None, max_length=65536)


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: ModelStage


# --------------------------------------------------------------------------- routes


@router.post("/serving/endpoints/{endpoint_id}/rollback", response_model=Envelope[WriteOut],
             operation_id="rollbackEndpoint",
             summary="Roll an endpoint back to its previous spec (a commit)",
             dependencies=[require(Permission.SERVING_ROLLBACK)], responses=WRITE_RESPONSES)
def rollback_endpoint(writes: WritesDep, caller: CallerDep, endpoint_id: IdPath,
                      environment: Environment = None) -> Envelope[WriteOut]:
    """The endpoint's spec file as it was before the change now applied, committed."""
    done = writes.rollback_endpoint(caller, endpoint_id, environment=environment)
    return success(WriteOut.of(done), f"rollback of {done.name} committed to {done.branch}")


@router.post("/prompts/experiments/{experiment_id}/conclude", response_model=Envelope[WriteOut],
             operation_id="concludeExperiment",
             summary="Conclude an experiment with its winner (a commit)",
             dependencies=[require(Permission.PROMPTS_CONCLUDE)], responses=WRITE_RESPONSES)
def conclude_experiment(writes: WritesDep, caller: CallerDep, experiment_id: IdPath,
                        request: ConcludeRequest,
                        environment: Environment = None) -> Envelope[WriteOut]:
    """``state: concluded``, the winner (one of the variants) and the notes, committed."""
    done = writes.conclude_experiment(caller, experiment_id, request.winnerTemplateId,
                                      request.notes, environment=environment)
    return success(WriteOut.of(done), f"conclusion of {done.name} committed to {done.branch}")


@router.post("/catalog/models/{model_id}/promote", response_model=Envelope[WriteOut],
             operation_id="promoteModel",
             summary="Change a model's stage (a commit)",
             dependencies=[require(Permission.MODELS_PROMOTE)], responses=WRITE_RESPONSES)
def promote_model(writes: WritesDep, caller: CallerDep, model_id: IdPath,
                  request: PromoteRequest) -> Envelope[WriteOut]:
    """The model version's ``stage`` set to ``stage``, committed."""
    done = writes.promote_model(caller, model_id, request.stage)
    return success(WriteOut.of(done), f"stage change of {done.name} committed to {done.branch}")


def _declared_length(request: Request) -> int:
    """The body's announced length, once it is a raw octet stream (415 / 411 / 400)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/octet-stream":
        raise UnsupportedMediaType("send the file as the raw body, Content-Type: "
                                   "application/octet-stream")
    raw = request.headers.get("content-length")
    if raw is None:
        raise LengthRequired("Content-Length is required for an upload")
    if not raw.strip().isdigit():
        raise errors.BadRequest("Content-Length is not a number")
    return int(raw)


_EXTENSIONS = "|".join(ext.lstrip(".") for ext in schema.MODEL_FILE_EXTENSIONS)
FILE_NAME_PATTERN = rf"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.(?:{_EXTENSIONS})$"
"""What ``check_file_name`` takes (with at most 200 characters), as a pattern without
look-ahead: a letter or digit first, no ``..``, an allowed extension last."""
FileName = {"min_length": 1, "max_length": 200,
            "json_schema_extra": {"pattern": FILE_NAME_PATTERN}}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **WRITE_RESPONSES,
    411: {"model": Failure, "description": "No Content-Length."},
    413: {"model": Failure, "description": "A file is too large."},
    415: {"model": Failure, "description": "Not a body type this operation takes."}}


def _body(media_type: str, schema_: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {media_type: {"schema": schema_, **more}}}}


# A ``files`` part's file name is its ``Content-Disposition`` ``filename``, which the body
# schema cannot constrain: the part's header says it (OpenAPI ``encoding``), with an
# example (the name a client such as schemathesis sends when it has no file name).
FILES_ENCODING = {"files": {"contentType": "application/octet-stream", "headers": {
    "Content-Disposition": {
        "description": "form-data; name=\"files\"; filename=\"<file name>\": the file "
                       "name as ?filename= takes it (e.g. config.json); another name is a "
                       "422.",
        "schema": {"type": "string", "pattern": (
            r'^form-data; *name="files"; *filename="'
            + FILE_NAME_PATTERN.removeprefix("^").removesuffix("$") + '"$'),
            "example": 'form-data; name="files"; filename="config.json"'}}}}}


async def _upload(request: Request, writes: WriteService, caller: Caller, model_id: str,
                  filename: str | None) -> Envelope[UploadOut]:
    """A multipart body's ``files`` parts, or the raw body as the file ``filename``."""
    boundary = uploads.boundary_of(request.headers.get("content-type", ""))
    if boundary is None:
        if filename is None:
            raise errors.BadRequest("filename is required for a raw upload",
                                    {"field": "filename"})
        file_name = service_uploads.check_file_name(filename)
        length = _declared_length(request)
    batch = await anyio.to_thread.run_sync(
        service_uploads.begin, writes, caller, model_id,
        file_name if boundary is None else "(multipart)", None if boundary else length)
    done = await (uploads.stream_multipart(request, batch, boundary) if boundary is not None
                  else uploads.stream_raw(request, batch, file_name, length))
    return success(UploadOut.of_upload(done),
                   f"{', '.join(f.name for f in done.files)} uploaded and recorded on "
                   f"{done.branch}")


# The multipart form is what the OpenAPI documents here: it cannot say that a query
# parameter is required for one body type only. The raw form it documents is
# ``.../files/{filename}``; ``?filename=`` with a raw body still works here (the seed's).
@router.post("/catalog/models/{model_id}/upload", response_model=Envelope[UploadOut],
             operation_id="uploadModelFiles",
             response_model_exclude_none=True,
             summary="Upload model files to S3 and record them (one commit)",
             dependencies=[require(Permission.MODELS_UPLOAD)], responses=UPLOAD_RESPONSES,
             openapi_extra=_body("multipart/form-data", {
                 "type": "object", "required": ["files"], "additionalProperties": False,
                 "properties": {"files": {
                     "type": "array", "minItems": 1,
                     "items": {"type": "string", "format": "binary"}}}},
                 encoding=FILES_ENCODING))
async def upload_model_files(
    request: Request, writes: WritesDep, caller: CallerDep, model_id: IdPath,
    filename: Annotated[str | None, Query(**FileName, description=(
        "Only with a raw application/octet-stream body (as POST .../files/{filename}): its "
        "file name, e.g. config.json; ignored with multipart."))] = None,
) -> Envelope[UploadOut]:
    """Stream each ``files`` part of a ``multipart/form-data`` body to
    ``models/{name}/{version}/{file}`` (the part's filename), then record them all in
    ``files`` with one commit. (A raw ``application/octet-stream`` body named by
    ``?filename=`` is taken too, as ``POST .../files/{filename}`` takes it.)"""
    return await _upload(request, writes, caller, model_id, filename)


@router.post("/catalog/models/{model_id}/files/{filename}", response_model=Envelope[UploadOut],
             operation_id="uploadModelFile",
             response_model_exclude_none=True,
             summary="Upload one model file as the raw body and record it (one commit)",
             dependencies=[require(Permission.MODELS_UPLOAD)], responses=UPLOAD_RESPONSES,
             openapi_extra=_body("application/octet-stream",
                                 {"type": "string", "format": "binary"}))
async def upload_model_file(
    request: Request, writes: WritesDep, caller: CallerDep, model_id: IdPath,
    filename: Annotated[str, Path(**FileName, description="The file's name, e.g. "
                                                           "config.json.")],
) -> Envelope[UploadOut]:
    """Stream the raw ``application/octet-stream`` body (with its ``Content-Length``) to
    ``models/{name}/{version}/{filename}``, then record it in ``files`` with one commit."""
    if uploads.boundary_of(request.headers.get("content-type", "")) is not None:
        raise UnsupportedMediaType("send the file as the raw body, Content-Type: "
                                   "application/octet-stream")
    return await _upload(request, writes, caller, model_id, filename)
