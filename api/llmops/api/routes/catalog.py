"""The spec catalog, read-only: models, prompt templates and datasets under ``/catalog``.

Role: list and look up the specs of the latest validated revision as the
store's catalog holds them (never read from git). Each entry answers to its
stable UUID and to its name; a model also to ``name@version``, and its bare
name returns every version. Input: query and path parameters; the store.
Output, in the envelope:

- ``GET /catalog/models``: filters ``type``, ``ownerTeam``, ``stage``,
  ``dataClassification`` and ``name`` (a prefix); ``GET /catalog/models/{id}``;
- ``GET /catalog/prompts`` (filter ``name``, ``model``) and ``/{id}``;
- ``GET /catalog/datasets`` (filters ``ownerTeam``, ``dataClassification``,
  ``name``) and ``/{id}``.

All need ``catalog:read``. Caller: ``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from llmops.api import lookup
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import PageDep, StoreDep
from llmops.api.envelope import Envelope, Failure, success
from llmops.api.resources import Items, ModelOut, ModelVersions, SpecOut
from llmops.engine.service import writes
from llmops.engine.spec.schema import DataClassification, ModelStage, ModelType, Permission
from llmops.engine.store import catalog
from llmops.engine.types import Kind

router = APIRouter(prefix="/catalog", tags=["catalog"], responses=AUTH_RESPONSES)
READ = [require(Permission.CATALOG_READ)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Failure, "description": "No such entry."}}

IdPath = Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                             description="The UUID or the name.")]
NamePrefix = Annotated[str | None, Query(alias="name", max_length=253,
                                         description="Names starting with this.")]
Team = Annotated[str | None, Query(alias="ownerTeam", max_length=63)]
Classification = Annotated[DataClassification | None, Query(alias="dataClassification")]


def _semver_key(entry: catalog.CatalogEntry) -> tuple[int, ...]:
    core = str(entry.body.get("version", "0.0.0")).split("-", 1)[0].split("+", 1)[0]
    return tuple(int(part) if part.isdigit() else 0 for part in core.split("."))


@router.get("/models", response_model=Envelope[Items[ModelOut]], summary="Models",
            dependencies=READ)
def list_models(
    store: StoreDep,
    page: PageDep,
    model_type: Annotated[ModelType | None, Query(alias="type")] = None,
    owner_team: Team = None,
    stage: Annotated[ModelStage | None, Query()] = None,
    data_classification: Classification = None,
    name: NamePrefix = None,
) -> Envelope[Items[ModelOut]]:
    """Every model version matching every given filter, by name then version."""
    entries = catalog.list_entries(store, kind=Kind.MODEL, name_prefix=name, fields={
        "type": model_type, "ownerTeam": owner_team, "stage": stage,
        "dataClassification": data_classification})
    entries.sort(key=lambda e: (e.base_name, _semver_key(e)))
    return success(Items[ModelOut].page(entries, page, ModelOut.of),
                   f"{len(entries)} model version(s)")


@router.get("/models/{model_id}", response_model=Envelope[ModelOut | ModelVersions],
            operation_id="getModel",
            summary="One model version, or every version of a name",
            dependencies=READ, responses=NOT_FOUND)
def get_model(store: StoreDep, model_id: IdPath) -> Envelope[ModelOut | ModelVersions]:
    """By UUID or ``name@version``: that version (also one registered through the API
    and not reconciled yet: its ``revision`` is then the commit); by name: every version."""
    if lookup.as_uuid(model_id) is not None or "@" in model_id:
        entry = writes.find(store, Kind.MODEL, model_id)
        where = "" if catalog.get(store, entry.id) is not None else \
            f" (committed as {entry.revision[:12]}, not reconciled yet)"
        return success(ModelOut.of(entry), f"model {entry.name}{where}")
    found = sorted(lookup.matches(store, Kind.MODEL, model_id), key=_semver_key)
    if not found:
        lookup.one(store, Kind.MODEL, model_id)  # raises the 404
    return success(ModelVersions(name=model_id, versions=[ModelOut.of(e) for e in found]),
                   f"{len(found)} version(s) of model {model_id}")


@router.get("/prompts", response_model=Envelope[Items[SpecOut]], summary="Prompt templates",
            dependencies=READ)
def list_prompts(
    store: StoreDep, page: PageDep, name: NamePrefix = None,
    model: Annotated[str | None, Query(max_length=253,
                                       description="Templates for this model name.")] = None,
) -> Envelope[Items[SpecOut]]:
    """Prompt templates, by name."""
    entries = catalog.list_entries(
        store, kind=Kind.PROMPT_TEMPLATE, name_prefix=name,
        where=None if model is None else
        lambda e: (e.body.get("modelRef") or {}).get("name") == model)
    return success(Items[SpecOut].page(entries, page, SpecOut.of),
                   f"{len(entries)} prompt template(s)")


@router.get("/prompts/{prompt_id}", response_model=Envelope[SpecOut],
            summary="One prompt template", dependencies=READ, responses=NOT_FOUND)
def get_prompt(store: StoreDep, prompt_id: IdPath) -> Envelope[SpecOut]:
    entry = lookup.one(store, Kind.PROMPT_TEMPLATE, prompt_id)
    return success(SpecOut.of(entry), f"prompt template {entry.name}")


@router.get("/datasets", response_model=Envelope[Items[SpecOut]], summary="Datasets",
            dependencies=READ)
def list_datasets(store: StoreDep, page: PageDep, owner_team: Team = None,
                  data_classification: Classification = None,
                  name: NamePrefix = None) -> Envelope[Items[SpecOut]]:
    """Datasets matching every given filter, by name."""
    entries = catalog.list_entries(store, kind=Kind.DATASET, name_prefix=name, fields={
        "ownerTeam": owner_team, "dataClassification": data_classification})
    return success(Items[SpecOut].page(entries, page, SpecOut.of),
                   f"{len(entries)} dataset(s)")


@router.get("/datasets/{dataset_id}", response_model=Envelope[SpecOut], summary="One dataset",
            dependencies=READ, responses=NOT_FOUND)
def get_dataset(store: StoreDep, dataset_id: IdPath) -> Envelope[SpecOut]:
    entry = lookup.one(store, Kind.DATASET, dataset_id)
    return success(SpecOut.of(entry), f"dataset {entry.name}")
