"""The web dashboard through HTTP (TestClient) on a real store and a reconciled specs repo.

The specs repo is the template (``test_writeback.make_world``), reconciled
once by the real reconciler with the hydrate actuator, so the pages show
what a user would see: environments, runs, the catalog, endpoints,
experiments, the audit log; GPU samples are added for the cost charts.
Principals come through the signed proxy (as on the REST API) or as a
bearer token pasted into the login page (then a cookie). Writes go through
the same use cases as the REST API and land as commits in the repo.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from store_fixtures import sqlite_url
from test_writeback import PROD_ENDPOINT, SECRET, Snapshot, World, git, make_world
from test_writeback import _bump_prod_replicas as bump_prod_replicas

from conftest import ok
from llmops.api import tokens
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.api.dashboard import charts
from llmops.engine import settings
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import reconciler
from llmops.engine.service import experiments
from llmops.engine.source import snapshots
from llmops.engine.store import Store, audit, state

JWT_SECRET = "dashboard-test-jwt-secret-0123456789"
IN_WINDOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Berlin
EXPERIMENT = "support-greeting-v2-vs-v3"
PAGES = ["/", "/catalog/models", "/catalog/models/support-chat", "/serving/endpoints",
         "/serving/endpoints/support-chat?environment=prod", "/prompts/experiments",
         "/reconcile/runs", "/governance/audit", "/costs"]


def signed(user: str, roles: str) -> dict[str, str]:
    return {"X-User-Id": user, "X-User-Roles": roles,
            "X-Proxy-Signature": proxy_signature(user, roles, SECRET)}


def app_for(world: World, **configured: Any) -> TestClient:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET, "jwt_secret": JWT_SECRET}
    cfg = settings.load(api=api, git={"repo": str(world.repo), "branch": "main"}, **configured)
    return TestClient(create_app(world.store, settings=cfg), client=("127.0.0.1", 40000),
                      follow_redirects=False)


def bearer_token(roles: list[str], *, exp: float | None = None, sub: str = "dee") -> str:
    return tokens.encode({"sub": sub, "roles": roles,
                          "exp": exp if exp is not None else time.time() + 300}, JWT_SECRET)


def reconcile_once(world: World, tmp_path: Path, at: datetime = IN_WINDOW) -> None:
    """One pass at a time inside the template's prod change window (else prod is blocked
    and its pages show no object, depending on when the tests run)."""
    src = snapshots.open_source(str(world.repo), "main", tmp_path / "work")
    rec = reconciler.Reconciler(world.store, src,
                                lambda env, cfg: HydrateActuator(tmp_path / "out"),
                                clock=lambda: at)
    rec.run_once()


@pytest.fixture(scope="module")
def reconciled(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Path:
    """The template as a specs repo, reconciled once into a SQLite store (a directory)."""
    root = tmp_path_factory.mktemp("reconciled")
    shutil.copyfile(migrated_sqlite, root / "llmops.db")
    with Store(sqlite_url(root)) as store:
        world = make_world(store, root)
        reconcile_once(world, root)
        now = datetime.now(UTC)
        state.add_gpu_samples(store, [
            state.GpuSample("prod", "nlp-platform", "support-chat", 1, 2,
                            now - timedelta(hours=3)),
            state.GpuSample("dev", "data-science", "sql-assistant", 1, 1,
                            now - timedelta(days=2))])
    shutil.rmtree(root / "work")
    return root


@pytest.fixture
def world(reconciled: Path, tmp_path: Path) -> Iterator[World]:
    """A copy of the reconciled repo and store for one test (writes stay in it)."""
    root = tmp_path / "world"
    shutil.copytree(reconciled, root, symlinks=True)
    with Store(sqlite_url(root)) as store:
        yield World(repo=root / "specs", store=store,
                    client=lambda *a, **k: pytest.fail("use app_for"))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def commits(world: World) -> dict[str, str]:
    return Snapshot.of(world.repo).refs


# --------------------------------------------------------------------------- pages


def test_every_page_loads_with_its_data_for_an_admin(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 200, (page, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert 'src="http' not in response.text
        assert 'href="http' not in response.text
    overview = client.get("/").text
    for env in ("dev", "stg", "prod"):
        assert f'id="env-{env}"' in overview
    assert "Failing runs" in overview
    assert 'class="author">' in overview  # the followed revision's author
    run_ids = re.findall(r'href="/reconcile/runs/(\d+)"', client.get("/reconcile/runs").text)
    assert run_ids
    run = client.get(f"/reconcile/runs/{run_ids[0]}").text
    assert "Per-object results" in run
    assert "Deployment" in run
    model = client.get("/catalog/models/support-chat").text
    assert "support-chat@1.2.0" in model
    assert "support-chat@1.3.0" in model
    assert "Storage URI" in model
    assert "prod/support-chat" in model
    endpoint = client.get("/serving/endpoints/support-chat?environment=prod").text
    assert "Deployment/" in endpoint
    assert "Applied revision" in endpoint
    experiment = client.get(f"/prompts/experiments/{EXPERIMENT}?environment=prod").text
    assert "<svg" in experiment
    assert "support-greeting-v3" in experiment
    assert "Verify the chain now" in client.get("/governance/audit").text
    assert 'data-chain="intact"' in client.get("/governance/audit?verify=1").text
    costs = client.get("/costs").text
    assert costs.count("<svg") >= 4
    assert "nlp-platform" in costs
    assert "data-science" in costs


def test_filters_narrow_the_lists_and_a_bad_filter_names_its_field(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    everything = client.get("/catalog/models").text
    adapters = client.get("/catalog/models", params={"type": "adapter"}).text
    assert "llama-3-8b" in everything
    assert "sql-adapter" in everything
    assert "sql-adapter" in adapters
    assert ">llama-3-8b<" not in adapters
    prod = client.get("/serving/endpoints", params={"environment": "prod"}).text
    assert ">prod<" in prod
    assert ">dev<" not in prod
    bad = client.get("/catalog/models", params={"stage": "retired"})
    assert bad.status_code == 400
    assert "filter stage" in bad.text
    assert "retired" in bad.text
    assert client.get("/governance/audit").status_code == 403  # a viewer has no audit:read


def test_model_pages_show_the_files_and_storage_the_api_reports(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    answer = ok(client.get("/llm-ops/v1/catalog/models"))
    listed = {m["name"]: m for m in answer["items"]}
    api = listed["llama-3-8b"]
    assert api["storageUri"] == "s3://acme-llm-models/models/llama-3-8b/1.0.0/"
    assert len(api["files"]) == 10
    page = client.get("/catalog/models/llama-3-8b").text
    assert f"<code>{api['storageUri']}</code>" in page
    for f in api["files"]:
        assert f"<td>{f['name']}</td>" in page
        assert f["sha256"] in page
    assert "No file recorded" not in page
    row = re.search(r'href="/catalog/models/llama-3-8b">.*?</tr>',
                    client.get("/catalog/models").text)
    assert row is not None
    assert row.group(0).endswith("<td>10</td></tr>")


def test_a_page_without_identity_sends_to_login_and_the_token_becomes_a_strict_cookie(
        world: World) -> None:
    client = app_for(world)
    first = client.get("/serving/endpoints")
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=%2Fserving%2Fendpoints"
    login = client.get("/login", params={"next": "/serving/endpoints"})
    assert login.status_code == 200
    assert 'type="password"' in login.text
    # Where a newcomer finds a token (the CLI takes none: it reads the store itself).
    assert "<code>.llmops/tokens/&lt;role&gt;</code>" in login.text
    assert "CLI" not in login.text
    csrf = csrf_of(login.text)
    refused = client.post("/login", data={"csrf": csrf, "token": "not-a-token",
                                          "next": "/serving/endpoints"})
    assert refused.status_code == 401
    assert "not authenticated" in refused.text
    done = client.post("/login", data={"csrf": csrf, "token": bearer_token(["viewer"]),
                                       "next": "/serving/endpoints"})
    assert done.status_code == 303
    assert done.headers["location"] == "/serving/endpoints"
    cookie = done.headers["set-cookie"].lower()
    assert "llmops_token=" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    page = client.get("/serving/endpoints")
    assert page.status_code == 200
    assert "support-chat" in page.text
    assert ">dee<" in page.text


def test_the_cookie_is_verified_like_a_bearer_token(world: World) -> None:
    client = app_for(world)
    client.cookies.set("llmops_token", bearer_token(["viewer"], exp=time.time() - 60))
    assert client.get("/").status_code == 303  # expired: back to the login
    client.cookies.set("llmops_token", bearer_token(["viewer"]) + "x")
    assert client.get("/").status_code == 303  # bad signature
    # The cookie is never an identity for the REST API.
    client.cookies.set("llmops_token", bearer_token(["admin"]))
    assert client.get("/llm-ops/v1/reconcile/runs").status_code == 401


def test_login_goes_only_to_a_local_page(world: World) -> None:
    client = app_for(world)
    csrf = csrf_of(client.get("/login").text)
    for target in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):
        done = client.post("/login", data={"csrf": csrf, "token": bearer_token(["viewer"]),
                                           "next": target})
        assert done.headers["location"] == "/"


def test_the_overview_names_each_followed_commit_for_every_reader(world: World) -> None:
    head = git(world.repo, "rev-parse", "HEAD").strip()
    author = git(world.repo, "log", "-1", "--format=%an <%ae>").strip()
    subject = git(world.repo, "log", "-1", "--format=%s").strip()
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))  # no audit:read: the store says it
    overview = client.get("/").text
    for env in ("dev", "stg", "prod"):
        card = overview[overview.index(f'id="env-{env}"'):]
        card = card[:card.index("</section>")]
        followed = re.search(r'<dd class="followed">(.*?)</dd>', card, re.S)
        assert followed is not None, card
        assert f'<code title="{head}">{head[:8]}</code>' in followed.group(1)
        assert f'<span class="author">{escape(author)}</span>' in followed.group(1)
        assert f'<span class="subject">{escape(subject)}</span>' in followed.group(1)
    status = ok(client.get("/llm-ops/v1/reconcile/status"))["environments"]
    assert {e["observedCommit"]["subject"] for e in status} == {subject}


def test_the_overview_counts_specs_a_hydrate_environment_cannot_observe(world: World) -> None:
    """Under hydrate (up's default) every spec is NotObserved: the card says how many,
    rather than a row of zeros that reads as an empty environment."""
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    overview = client.get("/").text
    for env in ("dev", "stg", "prod"):
        unseen = sum(1 for s in state.list_spec_status(world.store)
                     if s.key.environment == env and s.health == "NotObserved")
        assert unseen > 0, env
        card = overview[overview.index(f'id="env-{env}"'):]
        card = card[:card.index("</section>")]
        assert re.search(rf'<li class="h-NotObserved"[^>]*>{unseen} not observed', card), card


@pytest.mark.slow  # reconciles the repo a second time (about 2 s)
def test_a_blocked_environment_says_why_on_the_overview(world: World, tmp_path: Path) -> None:
    """In the evening prod's change is blocked: its card gives the reason with the run, as
    `llmops up` and `llmops status` do, not only the word 'blocked'."""
    bump_prod_replicas(world)
    reconcile_once(world, tmp_path, at=datetime(2026, 11, 23, 20, 0, tzinfo=UTC))  # Mon 21:00
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    overview = client.get("/").text
    card = overview[overview.index('id="env-prod"'):]
    card = card[:card.index("</section>")]
    assert re.search(r'class="result-blocked">#\d+ blocked</a>', card), card
    found = re.search(r'<span class="run-error">([^<]*)</span>', card)
    assert found is not None, card
    assert found.group(1).startswith("PolicyDenied: change-window: ")
    assert "outside every prod change window" in found.group(1)
    assert "next opens Tue 2026-11-24 08:00 CET" in found.group(1)
    dev = overview[overview.index('id="env-dev"'):]
    assert 'class="run-error"' not in dev[:dev.index("</section>")]


def test_a_run_page_shows_the_plan_as_llmops_plan_does(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    (first,) = state.list_runs(world.store, environment="dev")
    page = client.get(f"/reconcile/runs/{first.id}").text
    assert "What changes" in page
    assert re.search(r'<li class="action-created"><code>\+</code> <strong>ServingEndpoint '
                     r'dev/sql-assistant</strong>: created \(model sql-adapter', page)
    diffs = re.findall(r'<details class="object-diff" data-object="([^"]+)">', page)
    assert "Deployment/data-science-dev/sql-assistant" in diffs
    assert '<span class="hunk">@@ -0,0 +1,' in page
    assert '<span class="add">+kind: Deployment</span>' in page
    assert "Per-object results" in page
    assert "created</td>" in page
    data = ok(client.get(f"/llm-ops/v1/reconcile/runs/{first.id}"))
    assert [o["id"] for o in data["planDetail"]["objects"]] == diffs


@pytest.mark.slow  # reconciles the repo a second time (about 2 s)
def test_no_secret_value_of_a_change_lands_in_the_store_or_the_run_page(
        world: World, tmp_path: Path) -> None:
    token = "hf_dashboard_secret_value_0123456789"
    path = world.repo / PROD_ENDPOINT
    path.write_text(path.read_text().replace(
        "      VLLM_LOGGING_LEVEL: INFO\n",
        f"      VLLM_LOGGING_LEVEL: INFO\n      HF_TOKEN: {token}\n", 1))
    git(world.repo, "commit", "-qam", "prod: support-chat pulls with a token")
    reconcile_once(world, tmp_path)
    (run,) = state.list_runs(world.store, environment="prod", limit=1)
    assert run.subject == "prod: support-chat pulls with a token"
    with world.store.connection() as conn:
        for table in ("reconcile_runs", "audit_log", "environment_status", "object_status",
                      "spec_status", "inventory", "spec_catalog"):
            rows = conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall()
            assert token not in str(rows), table
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    page = client.get(f"/reconcile/runs/{run.id}").text
    assert token not in page
    assert "runtime env changed: HF_TOKEN" in page  # the summary names it, never its value
    assert "value: &#39;***&#39;" in page  # the diff masks it as `llmops plan` does
    assert token not in client.get(f"/llm-ops/v1/reconcile/runs/{run.id}").text


def test_the_audit_page_pages_by_cursor_filters_by_result_and_verifies_the_chain(
        world: World) -> None:
    viewer = app_for(world)
    viewer.headers.update(signed("vera", "viewer"))
    assert viewer.get("/governance/audit").status_code == 403  # audited as denied
    client = app_for(world)
    client.headers.update(signed("aude", "auditor"))
    first = client.get("/governance/audit").text
    ids = [int(i) for i in re.findall(r'<tr class="result-[a-z]+"><td>(\d+)</td>', first)]
    assert len(ids) == 50
    older = re.search(r'<a rel="next" href="([^"]+)">Older entries</a>', first)
    assert older is not None
    second = client.get("/governance/audit" + older.group(1).replace("&amp;", "&")).text
    more = [int(i) for i in re.findall(r'<tr class="result-[a-z]+"><td>(\d+)</td>', second)]
    assert more
    assert max(more) < min(ids)
    for result in ("intent", "succeeded", "failed", "denied", "blocked"):
        assert f"<option>{result}</option>" in first or f"<option selected>{result}" in first
    denied = client.get("/governance/audit", params={"result": "denied"}).text
    rows = re.findall(r'<tr class="result-([a-z]+)">.*?</tr>', denied, re.S)
    assert rows
    assert set(rows) == {"denied"}
    assert "<option selected>denied</option>" in denied
    assert "GET /governance/audit" in denied
    bad = client.get("/governance/audit", params={"result": "exploded"})
    assert bad.status_code == 400
    assert "filter result" in bad.text
    assert 'data-chain="intact"' in client.get("/governance/audit",
                                               params={"verify": "1"}).text


# --------------------------------------------------------------------------- experiments


class Prometheus:
    """Our own boundary, ``experiments.PrometheusHttp``: the router's series for the two
    variants of the template's prod experiment, counted from zero over the window."""

    def __init__(self) -> None:
        self.calls = 0

    def instant(self, query: str, at: datetime) -> list[experiments.Sample]:
        self.calls += 1
        if self.calls % 2 == 0:  # the window's start: every counter was zero
            return []
        base = {"environment": "prod", "endpoint": "support-chat", "experiment": EXPERIMENT}
        name = "llmops_router_request_duration_seconds"
        out: list[experiments.Sample] = []
        for variant, fast, total, seconds in (("support-greeting-v2", 300.0, 400.0, 60.0),
                                              ("support-greeting-v3", 20.0, 100.0, 30.0)):
            labels = {**base, "variant": variant}
            out += [({**labels, "__name__": "llmops_router_requests_total", "code": "200"},
                     total),
                    ({**labels, "__name__": f"{name}_bucket", "le": "0.1"}, fast),
                    ({**labels, "__name__": f"{name}_bucket", "le": "0.5"}, total),
                    ({**labels, "__name__": f"{name}_bucket", "le": "+Inf"}, total),
                    ({**labels, "__name__": f"{name}_sum"}, seconds),
                    ({**labels, "__name__": f"{name}_count"}, total)]
        return out


def test_the_experiment_page_shows_each_variants_metric_and_significance(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experiments, "PrometheusHttp", lambda url, timeout: Prometheus())
    client = app_for(world, prometheus={"url": "http://prometheus.test:9090", "timeout": 1})
    client.headers.update(signed("vera", "viewer"))
    url = f"/prompts/experiments/{EXPERIMENT}"
    api = ok(client.get(f"/llm-ops/v1{url}", params={"environment": "prod"}))["metrics"]
    (compared,) = api["comparisons"]
    page = client.get(url, params={"environment": "prod"}).text
    assert 'data-metrics="measured"' in page
    assert "<svg" in page  # the weight bar
    control = _row(page, "support-greeting-v2")
    assert '<span class="badge">control</span>' in control
    assert '<td class="requests">400</td>' in control
    assert "150" in control  # mean latency: 60 s over 400 requests
    v3 = _row(page, "support-greeting-v3")
    assert '<td class="requests">100</td>' in v3
    assert "300" in v3  # 30 s over 100 requests
    assert f'<td class="p-value">{compared["pValue"]:.4f}</td>' in v3
    assert f"{(1 - compared['pValue']) * 100:.1f}%" in v3
    assert f'data-significant="{"yes" if compared["significant"] else "no"}"' in v3
    needed = compared["additionalSamples"]
    assert (f"{needed} more" if needed else "enough") in v3


def test_the_experiment_page_says_when_prometheus_is_missing_or_down(world: World) -> None:
    url = f"/prompts/experiments/{EXPERIMENT}?environment=prod"
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    page = client.get(url)
    assert page.status_code == 200
    assert 'data-metrics="unconfigured"' in page.text
    assert "Prometheus is not configured" in page.text
    assert "not measured" in _row(page.text, "support-greeting-v3")
    down = app_for(world, prometheus={"url": "http://127.0.0.1:1", "timeout": 1})
    down.headers.update(signed("vera", "viewer"))
    page = down.get(url)
    assert page.status_code == 200
    assert 'data-metrics="unavailable"' in page.text
    assert "did not answer" in page.text
    bad = down.get(url + "&window=2w")
    assert bad.status_code == 422
    assert "window must look like" in bad.text


def _row(page: str, variant: str) -> str:
    found = re.search(rf'<tr data-variant="{re.escape(variant)}"[^>]*>(.*?)</tr>', page, re.S)
    assert found is not None, f"no row for {variant}"
    return found.group(1)


# --------------------------------------------------------------------------- writes


@pytest.mark.slow  # reconciles the repo a second time (about 2 s)
def test_rollback_from_the_endpoint_page_is_a_commit(world: World, tmp_path: Path) -> None:
    original, applied = bump_prod_replicas(world)
    reconcile_once(world, tmp_path)  # the change is applied; now it is rolled back
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    page = client.get("/serving/endpoints/support-chat?environment=prod").text
    assert "Roll back support-chat" in page
    assert "data-confirm" in page
    done = client.post("/serving/endpoints/support-chat/rollback",
                       data={"csrf": csrf_of(page), "environment": "prod"})
    assert done.status_code == 200, done.text
    commit = re.search(r'class="commit">([0-9a-f]{40})<', done.text)
    branch = re.search(r'class="branch">([^<]+)<', done.text)
    assert commit is not None
    assert branch is not None
    assert branch.group(1).startswith("llmops/rollback/support-chat-")
    assert world.show(commit.group(1), PROD_ENDPOINT) == original
    assert git(world.repo, "rev-parse", f"{commit.group(1)}^").strip() == applied
    rows = audit.AuditLog(world.store).query(action="write").entries
    assert rows[0].result == "succeeded"
    assert rows[0].actor == "ada"


def test_conclude_from_the_experiment_page_is_a_commit(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    page = client.get(f"/prompts/experiments/{EXPERIMENT}?environment=prod").text
    assert 'name="winner"' in page
    action = re.search(r'action="(/prompts/experiments/[^"]+/conclude)"', page)
    assert action is not None
    done = client.post(action.group(1), data={"csrf": csrf_of(page),
                                              "winner": "support-greeting-v3",
                                              "notes": "v3 wins."})
    assert done.status_code == 200, done.text
    commit = re.search(r'class="commit">([0-9a-f]{40})<', done.text)
    assert commit is not None
    text = world.show(commit.group(1), f"experiments/{EXPERIMENT}.yaml")
    assert "state: concluded" in text
    assert "winner: support-greeting-v3" in text


def test_a_viewer_sees_no_write_button_and_a_post_is_403_audited(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    page = client.get("/serving/endpoints/support-chat?environment=prod").text
    assert "Roll back" not in page
    assert "/rollback" not in page
    experiment = client.get(f"/prompts/experiments/{EXPERIMENT}?environment=prod").text
    assert 'name="winner"' not in experiment
    assert "Upload" not in client.get("/catalog/models/support-chat").text
    before = commits(world)
    refused = client.post("/serving/endpoints/support-chat/rollback",
                          data={"csrf": csrf_of(page), "environment": "prod"})
    assert refused.status_code == 403
    assert "lacks the permission serving:rollback" in refused.text
    assert commits(world) == before
    denied = audit.AuditLog(world.store).query(action="access", result="denied").entries
    assert denied[0].actor == "vera"
    assert denied[0].target == "POST /serving/endpoints/{endpoint_id}/rollback"


def test_a_form_without_the_right_csrf_token_is_refused(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    page = client.get("/serving/endpoints/support-chat?environment=prod").text
    before = commits(world)
    for data in ({"environment": "prod"}, {"environment": "prod", "csrf": "0" * 64}):
        refused = client.post("/serving/endpoints/support-chat/rollback", data=data)
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    # A token made for another user (same browser, same nonce) does not pass either.
    client.headers.update(signed("bob", "admin"))
    refused = client.post("/serving/endpoints/support-chat/rollback",
                          data={"csrf": csrf_of(page), "environment": "prod"})
    assert refused.status_code == 403
    assert "does not match" in refused.text
    assert commits(world) == before
    assert not audit.AuditLog(world.store).query(action="write").entries


def test_an_upload_without_the_csrf_header_is_refused(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    client.get("/catalog/models/support-chat")
    refused = client.post("/catalog/models/support-chat@1.3.0/upload",
                          params={"filename": "config.json"}, content=b"{}",
                          headers={"Content-Type": "application/octet-stream"})
    assert refused.status_code == 403
    assert "CSRF" in refused.text


# --------------------------------------------------------------------------- live


def test_the_live_poll_names_the_newest_run(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("vera", "viewer"))
    first = client.get("/live/runs").json()
    run = state.start_run(world.store, "dev", "d" * 40)
    state.finish_run(world.store, run.id, state.RunResult.FAILED, error="boom")
    newest = client.get("/live/runs").json()
    assert newest == {"id": run.id, "environment": "dev", "result": "failed"}
    assert newest["id"] > first["id"]
    assert "boom" in client.get("/").text  # failing runs are listed on the overview
    assert client.get("/static/app.js").status_code == 200


# --------------------------------------------------------------------------- register


def test_register_a_model_from_its_page_is_a_commit_then_offers_the_upload(
        world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    assert 'href="/catalog/models/new"' in client.get("/catalog/models").text
    form = client.get("/catalog/models/new").text
    fields = {"csrf": csrf_of(form), "name": "ticket-triage", "version": "0.1.0",
              "type": "fine-tuned", "owner_team": "nlp-platform",
              "data_classification": "internal", "base_model": "llama-3-8b@1.0.0",
              "description": "Routes support tickets."}
    done = client.post("/catalog/models/new", data=fields)
    assert done.status_code == 201, done.text
    commit = re.search(r'class="commit">([0-9a-f]{40})<', done.text)
    assert commit is not None
    changed = git(world.repo, "show", "--name-only", "--format=", commit.group(1)).split()
    assert len(changed) == 1
    text = world.show(commit.group(1), changed[0])
    assert "name: ticket-triage" in text
    assert "ownerTeam: nlp-platform" in text
    assert 'data-upload="/catalog/models/ticket-triage%400.1.0/upload"' in done.text


def test_a_bad_registration_keeps_the_form_and_names_the_field(world: World) -> None:
    client = app_for(world)
    client.headers.update(signed("ada", "admin"))
    form = client.get("/catalog/models/new").text
    before = commits(world)
    refused = client.post("/catalog/models/new", data={
        "csrf": csrf_of(form), "name": "ticket-triage", "version": "not-semver",
        "type": "fine-tuned", "owner_team": "nlp-platform"})
    assert refused.status_code == 422
    assert "version" in refused.text
    assert 'value="ticket-triage"' in refused.text  # the form keeps what was typed
    assert commits(world) == before
    viewer = app_for(world)
    viewer.headers.update(signed("vera", "viewer"))
    assert 'href="/catalog/models/new"' not in viewer.get("/catalog/models").text
    assert viewer.get("/catalog/models/new").status_code == 403


def test_chart_values_stay_readable() -> None:
    assert [charts.number(v) for v in (0.0, 0.004167, 2.5, 1234567.0, 12.345)] == [
        "0", "0.00417", "2.50", "1,234,567", "12.35"]
    svg = str(charts.bars("GPU hours <per team>", [("a&b", 2.0), ("c", 1.0)]))
    assert "&lt;per team&gt;" in svg
    assert "a&amp;b" in svg
