"""Probes: ``GET /healthz`` (the process answers) and ``GET /readyz`` (the store answers).

Role: liveness and readiness for Kubernetes probes and load balancers.
``/healthz`` touches nothing; ``/readyz`` makes one round trip to the
database (``Store.ping``), and a ``StoreUnavailable`` becomes a 503 envelope
in ``llmops.api.errors``. Input: nothing. Output: ``Liveness`` /
``Readiness`` in the envelope. Caller: ``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from fastapi import APIRouter

from llmops.api.deps import StoreDep
from llmops.api.envelope import Envelope, Failure, Liveness, Readiness, success

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Envelope[Liveness], summary="Liveness")
def healthz() -> Envelope[Liveness]:
    """The process is up and serving requests."""
    return success(Liveness(), "alive")


@router.get("/readyz", response_model=Envelope[Readiness], summary="Readiness",
            responses={503: {"model": Failure, "description": "The store is unreachable."}})
def readyz(store: StoreDep) -> Envelope[Readiness]:
    """The store answers a round trip; 503 while it does not."""
    store.ping()
    return success(Readiness(), "ready")
