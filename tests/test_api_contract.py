"""The API against its own OpenAPI document: schemathesis generates requests for every operation.

Every check schemathesis 4 has runs (none is excluded), on 30 generated requests per
operation (valid and schema-violating ones): no 5xx, only documented status codes,
content types and headers, bodies that match the documented schema, every
schema-violating request refused (4xx), every schema-valid one accepted (2xx, or 401,
403, 404, 409: it may name a thing that does not exist or clash with what is there).
So the schema says exactly what the code takes and gives.

The stateful phase runs too: scenarios that follow the OpenAPI links each create's 201
carries (``data.id`` -> get, rollback, conclude, upload, promote), so calls reach real
ids: a model registered, then its files uploaded, promoted; an endpoint deployed, then
rolled back. Same checks, zero failures.

The app runs in-process (ASGI, no network) as ``llmops serve`` runs it in production:
a migrated PostgreSQL store (a database of its own, dropped afterwards) seeded with the
template's catalog, runs and endpoint health; a real specs repo (the template, one
commit) for the writes; moto's S3 server with the model bucket; the local Redis; a
webhook secret and a trigger. An admin bearer token goes with every request. The same
store behind a bare app (no Redis, no webhook secret, no reconciler, no specs repo)
checks that every optional part it lacks is a documented 4xx (409), never a 503.

Bounded: 30 examples per operation, 25 stateful scenarios of up to 6 calls, 8 per
operation on the bare app; derandomized, no deadline; 4.6 minutes for the whole module at
a load average of 20 on a 2-core machine (one run of 1.5 minutes before the stateful
phase and the bare app's writes were added, at a lower load).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis.core.failures import FailureGroup
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
STATEFUL_SCENARIOS = 25
BARE_EXAMPLES = 8
"""The bare app answers its optional operations at once (409), whatever the body."""
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# The operations whose optional part the bare app lacks: Redis, the reconciler, the
# webhook secret, and a specs repo for the writes.
OPTIONAL_PARTS = (r"/(reconcile/events|reconcile/trigger|webhooks/git)$"
                  r"|^POST .*/(catalog/models|serving/endpoints|prompts/experiments"
                  r"|training/jobs)(/\{\w+\}/\w+(/\{filename\})?)?$")


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
    store, _repo = contract_store
    home = tmp_path_factory.mktemp("bare-home")
    return create_app(store, settings=_settings(home, full=False))


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


@schema.include(name_regex=OPTIONAL_PARTS).parametrize()
@settings(HYPOTHESIS, max_examples=BARE_EXAMPLES)
def test_an_optional_part_the_server_lacks_is_a_documented_4xx(case: Any,
                                                               bare_app: FastAPI) -> None:
    case.call_and_validate(app=bare_app, headers=_send_to(case, bare_app))




STATEFUL = settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=6, deadline=None,
                    derandomize=True, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))


def test_the_openapi_links_lead_to_calls_that_keep_the_contract(full_app: FastAPI) -> None:
    """schemathesis's stateful phase: scenarios of up to 6 calls that follow the OpenAPI
    links from a create's 201 (``data.id``) to get, rollback, conclude, upload and promote,
    every check on each call. Each failing call is recorded as it happens: a replay of a
    failing scenario cannot be trusted (each call changed the repo, the store and S3, so
    Hypothesis sees other data and stops with ``Flaky``), which ends the run, not the
    verdict."""
    failures: list[str] = []
    answered: set[tuple[str, int]] = set()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"app": full_app, "headers": _send_to(case, full_app)}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            answered.add((f"{case.method} {case.path.removeprefix(BASE)}", response.status_code))
            try:
                super().validate_response(response, case, *args, **kwargs)
            except FailureGroup as exc:
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code} {response.text[:300]}: {exc}")
                raise

    with contextlib.suppress(Flaky, FailureGroup):
        Machine.run(settings=STATEFUL)
    assert failures == []
    # The links were followed: a model was created, then its id reached an operation.
    assert ("POST /catalog/models", 201) in answered
    assert any("{model_id}" in call and status < 300 for call, status in answered), answered
