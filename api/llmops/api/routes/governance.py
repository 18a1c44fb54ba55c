"""Governance policies, read-only: ``GET /governance/policies``.

Role: the ``Policy`` specs of the catalog's revision as recorded: RBAC
roles, promotion rules, classification -> environments, GPU budgets,
change windows and prune protection. The roles listed here are the ones the
API enforces (``llmops.api.auth`` reads the same catalog). Input: an
optional ``name`` prefix; the store. Output: ``SpecOut`` items in the
envelope. Needs ``governance:read``. Caller: ``llmops.api.app`` mounts
``router`` (the audit log lives in ``routes.audit``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import PageDep, StoreDep
from llmops.api.envelope import Envelope, success
from llmops.api.resources import Items, SpecOut
from llmops.engine.spec.schema import Permission
from llmops.engine.store import catalog
from llmops.engine.types import Kind

router = APIRouter(prefix="/governance", tags=["governance"], responses=AUTH_RESPONSES)


@router.get("/policies", response_model=Envelope[Items[SpecOut]], summary="Policies",
            dependencies=[require(Permission.GOVERNANCE_READ)])
def list_policies(
    store: StoreDep,
    page: PageDep,
    name: Annotated[str | None, Query(max_length=253,
                                      description="Names starting with this.")] = None,
) -> Envelope[Items[SpecOut]]:
    """Every recorded Policy spec, by name."""
    entries = catalog.list_entries(store, kind=Kind.POLICY, name_prefix=name)
    return success(Items[SpecOut].page(entries, page, SpecOut.of),
                   f"{len(entries)} polic{'y' if len(entries) == 1 else 'ies'}")
