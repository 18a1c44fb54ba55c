"""Training jobs, read-only: ``GET /training/jobs`` and ``/training/jobs/{id}``.

Role: the training jobs of the catalog's revision with their base model,
dataset, output model, owning team, last assessed health, the seed's job
``phase`` (queued, running, succeeded, failed: from the Job's health) and
the experiment URL. Filters:
``environment``, ``ownerTeam``, ``baseModel`` (a model name) and ``phase``. Each job
answers to its UUID and to its name (``environment=`` narrows a name used in
several environments). Input: query and path parameters; the store.
Output: ``TrainingJobOut`` in the envelope. Needs ``training:read``.
Caller: ``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from llmops.api import lookup
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import PageDep, StoreDep
from llmops.api.envelope import Envelope, Failure, success
from llmops.api.resources import Items, SpecOut, StatusOut, TrainingJobOut
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.service import access
from llmops.engine.spec.schema import Permission
from llmops.engine.store import catalog, db, state
from llmops.engine.types import Kind, SpecKey

router = APIRouter(prefix="/training", tags=["training"], responses=AUTH_RESPONSES)
READ = [require(Permission.TRAINING_READ)]


def _model_ref(value: object) -> tuple[str, str]:
    ref = value if isinstance(value, dict) else {}
    return str(ref.get("name", "")), str(ref.get("version", ""))


PHASES = {HealthStatus.HEALTHY.value: "succeeded", HealthStatus.DEGRADED.value: "failed",
          HealthStatus.PROGRESSING.value: "running"}
"""A Job's health -> the seed's job status; anything else (Missing, Unknown, not
observed by the actuator) is ``queued``: submitted, not seen running."""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _job(store: db.Store, entry: catalog.CatalogEntry,
         status: state.SpecStatus | None) -> TrainingJobOut:
    base_name, base_version = _model_ref(entry.body.get("baseModelRef"))
    out_name, out_version = _model_ref(entry.body.get("outputModel"))
    return TrainingJobOut(
        **SpecOut.fields_of(entry), owner_team=access.owner_team(store, entry),
        base_model=lookup.ref(Kind.MODEL, base_name, version=base_version),
        dataset=lookup.ref(Kind.DATASET, str(entry.body.get("datasetRef", ""))),
        output_model=lookup.ref(Kind.MODEL, out_name, version=out_version),
        status=StatusOut.of(status),
        phase=PHASES.get(status.health if status is not None else "", "queued"),
        experiment_url=_text(entry.body.get("experimentUrl")))


def _statuses(store: db.Store, environment: str | None) -> dict[SpecKey, state.SpecStatus]:
    return {s.key: s for s in state.list_spec_status(store, environment=environment,
                                                     kind=Kind.TRAINING_JOB)}


@router.get("/jobs", response_model=Envelope[Items[TrainingJobOut]], summary="Training jobs",
            dependencies=READ)
def list_jobs(
    store: StoreDep,
    page: PageDep,
    environment: Annotated[str | None, Query(max_length=63)] = None,
    owner_team: Annotated[str | None, Query(alias="ownerTeam", max_length=63)] = None,
    base_model: Annotated[str | None, Query(alias="baseModel", max_length=253)] = None,
    phase: Annotated[str | None, Query(max_length=16, description=(
        "queued, running, succeeded or failed (any case)."))] = None,
) -> Envelope[Items[TrainingJobOut]]:
    """Jobs matching every given filter, by environment then name."""
    statuses = _statuses(store, environment)
    items = [_job(store, e, statuses.get(e.key))
             for e in catalog.list_entries(store, kind=Kind.TRAINING_JOB,
                                           environment=environment)]
    items = [j for j in items if (owner_team is None or j.owner_team == owner_team)
             and (base_model is None or j.base_model.name == base_model)
             and (phase is None or j.phase == phase.strip().casefold())]
    return success(Items[TrainingJobOut].page(items, page, lambda job: job),
                   f"{len(items)} training job(s)")


@router.get("/jobs/{job_id}", response_model=Envelope[TrainingJobOut],
            operation_id="getTrainingJob",
            summary="One training job", dependencies=READ,
            responses={404: {"model": Failure, "description": "No such job."},
                       409: {"model": Failure, "description": "The name is ambiguous."}})
def get_job(
    store: StoreDep,
    job_id: Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                                description="The UUID or the name.")],
    environment: Annotated[str | None, Query(max_length=63)] = None,
) -> Envelope[TrainingJobOut]:
    entry = lookup.one(store, Kind.TRAINING_JOB, job_id, environment=environment)
    return success(_job(store, entry, state.get_spec_status(store, entry.key)),
                   f"training job {entry.name} in {entry.environment}")
