"""The API against its own OpenAPI document: schemathesis generates requests for every operation.

Every check schemathesis 4 has runs (none is excluded), on 30 generated requests per
operation (valid and schema-violating ones): no 5xx, only documented status codes,
content types and headers, bodies that match the documented schema, every
schema-violating request refused (4xx), every schema-valid one accepted (2xx, or 401,
403, 404, 409: it may name a thing that does not exist or clash with what is there).
So the schema says exactly what the code takes and gives.

The app runs in-process (ASGI, no network) as ``llmops serve`` runs it in production:
a migrated PostgreSQL store (a database of its own, dropped afterwards) seeded with the
template's catalog, runs and endpoint health; a real specs repo (the template, one
commit) for the writes; moto's S3 server with the model bucket; the local Redis; a
webhook secret and a trigger. An admin bearer token goes with every request. The same
store behind a bare app (no Redis, no webhook secret, no reconciler) checks that every
optional part it lacks is a documented 4xx (409), never a 503. (A stateful run over
the OpenAPI links is not part of the suite yet: README says which gaps it finds.)

Bounded: 30 examples per operation, derandomized, no deadline; about two to three
minutes for the whole module on a busy 2-core machine.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

from conftest import REDIS_URL, moto_s3
from llmops.api import tokens
from llmops.api.app import create_app
from llmops.engine import settings as llmops_settings
from llmops.engine.settings import Settings
from llmops.engine.source import scaffold
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog, state
from llmops.engine.store.models import RunResult
from llmops.engine.types import Kind, SpecKey

# Slow tier: PostgreSQL, Redis, an S3 server.
pytestmark = pytest.mark.slow

BASE = "/llm-ops/v1"
JWT_SECRET = "contract-jwt-secret-0123456789abcdef"
WEBHOOK_SECRET = "contract-webhook-secret"
BUCKET = "llmops-models"
EXAMPLES = 30
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# The operations whose optional part the bare app lacks.
OPTIONAL_PARTS = r"/(reconcile/events|reconcile/trigger|webhooks/git)$"


def _settings(home: Path, *, repo: str = "", s3_url: str = "http://127.0.0.1:9",
              full: bool = True) -> Settings:
    api: dict[str, Any] = {"jwt_secret": JWT_SECRET}
    if full:
        api["webhook_secret"] = WEBHOOK_SECRET
    return llmops_settings.load(
        api=api, git={"repo": repo, "branch": "main"}, home=home,
        s3={"endpoint_url": s3_url, "bucket": BUCKET, "max_attempts": 1},
        redis_url=REDIS_URL if full else "")


# The document is read once, from an app built over a store that is never opened (the
# OpenAPI does not depend on the store or the settings' values); every case is then sent
# to the app of the fixture below (``app=``), which runs on PostgreSQL. schemathesis's
# lazy ``from_fixture`` loader does not run under pytest 9.
_DOC_HOME = Path(tempfile.gettempdir()) / "llmops-contract-doc"
schema = schemathesis.openapi.from_dict(create_app(
    Store(f"sqlite:///{_DOC_HOME / 'never-opened.db'}"),
    settings=_settings(_DOC_HOME)).openapi())


def _seed(store: Store, repo: Path) -> None:
    revision = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    catalog.record(store, revision, validate.load_and_validate(repo))
    state.put_spec_status(store, state.SpecStatus(
        SpecKey(Kind.SERVING_ENDPOINT, "prod", "support-chat"), revision, "Healthy"))
    for result in (RunResult.SUCCEEDED, RunResult.FAILED, RunResult.RUNNING):
        run = state.start_run(store, "dev", revision, plan={"actuator": "hydrate"})
        if result is not RunResult.RUNNING:
            state.finish_run(store, run.id, result, error="boom" if result else "")
    state.put_environment_status(store, state.EnvironmentStatus(environment="dev"))
    audit.AuditLog(store).append(audit.AuditEntry(actor="seeder", action="apply",
                                                  target="obj", result="succeeded"))


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 server with the model bucket (dummy credentials for this module)."""
    with moto_s3(BUCKET, AWS_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def contract_store(module_postgres_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """The migrated PostgreSQL store, seeded, and the specs repo it was seeded from."""
    repo = tmp_path_factory.mktemp("contract") / "specs"
    scaffold.init_repo(repo)
    with Store(module_postgres_url) as store:
        store.migrate()
        _seed(store, repo)
        yield store, repo


@pytest.fixture(scope="module")
def full_app(contract_store: tuple[Store, Path], s3_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    store, repo = contract_store
    home = tmp_path_factory.mktemp("home")
    return create_app(store, trigger=lambda: None,
                      settings=_settings(home, repo=str(repo), s3_url=s3_url))


@pytest.fixture(scope="module")
def bare_app(contract_store: tuple[Store, Path],
             tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    store, repo = contract_store
    home = tmp_path_factory.mktemp("bare-home")
    return create_app(store, settings=_settings(home, repo=str(repo), full=False))


def _send_to(case: Any, app: FastAPI) -> dict[str, str]:
    """Route the checks' own probes (``ignored_auth`` sends the request again without
    credentials) to ``app`` too (the document was read from another app); the headers to
    send: the admin token, except on a negative case that leaves a header out on purpose
    (the declared bearer scheme's ``Authorization``), which must stay out."""
    case.operation.schema.app = app
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        return {}
    return _auth()


def _auth() -> dict[str, str]:
    token = tokens.encode({"sub": "contract", "roles": ["admin"], "exp": time.time() + 600},
                          JWT_SECRET)
    return {"Authorization": f"Bearer {token}"}


HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))


@schema.parametrize()
@HYPOTHESIS
def test_every_operation_keeps_its_documented_contract(case: Any, full_app: FastAPI) -> None:
    case.call_and_validate(app=full_app, headers=_send_to(case, full_app))


@schema.include(path_regex=OPTIONAL_PARTS).parametrize()
@HYPOTHESIS
def test_an_optional_part_the_server_lacks_is_a_documented_4xx(case: Any,
                                                               bare_app: FastAPI) -> None:
    case.call_and_validate(app=bare_app, headers=_send_to(case, bare_app))
