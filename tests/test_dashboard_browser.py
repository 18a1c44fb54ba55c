"""The dashboard end to end in a real headless browser (Debian's chromium, via Playwright).

The app runs under uvicorn on loopback over a SQLite store and the template
specs repo reconciled once by the real reconciler (hydrate actuator); model
files go to moto's S3 server. Users sign in through the login page with a
bearer token (so the session cookie is exercised), then click through
every page, filter, upload several files, roll back, conclude, and watch
the overview refresh itself when a run finishes. A viewer is offered no
write button and gets a 403 when it posts anyway; a form without its CSRF
token is refused. Screenshots of every page at laptop and phone widths go
to ``tests/artifacts/dashboard/`` (gitignored).

``.ci/bootstrap`` installs chromium (apt) and Playwright (pip, dev extra).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from test_daemon import llmops_process, stop
from test_dashboard import EXPERIMENT, JWT_SECRET, PAGES, bearer_token, reconcile_once
from test_writeback import SECRET, World, git, make_world
from test_writeback import _bump_prod_replicas as bump_prod_replicas

from conftest import moto_s3, serving_app
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.store import Store, state

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts" / "dashboard"
BUCKET = "acme-llm-models"
WIDTHS = {"laptop": (1366, 860), "phone": (390, 844)}
TIMEOUT_MS = 15000


@dataclass
class Site:
    url: str
    world: World
    s3_url: str


@pytest.fixture(scope="module")
def s3_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    none = str(tmp_path_factory.mktemp("aws") / "none")
    with moto_s3(BUCKET, {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                          "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": none,
                          "AWS_SHARED_CREDENTIALS_FILE": none}) as url:
        yield url


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, s3_url: str) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    with Store(f"sqlite:///{root / 'llmops.db'}") as store:
        store.migrate()
        world = make_world(store, root)
        bump_prod_replicas(world)  # so that the rollback has an earlier spec to go back to
        reconcile_once(world, root)
        # The pass ran at a fixed time inside the change window: the cost charts' samples
        # are the last hours'.
        state.add_gpu_samples(store, [state.GpuSample(
            "prod", "nlp-platform", "support-chat", 1, 2, datetime.now(UTC) - timedelta(hours=3))])
        api = {"jwt_secret": JWT_SECRET, "trusted_proxies": ["127.0.0.1"],
               "proxy_secret": SECRET}
        cfg = settings.load(api=api, git={"repo": str(world.repo), "branch": "main"},
                            s3={"endpoint_url": s3_url, "bucket": BUCKET, "max_attempts": 1,
                                "connect_timeout_seconds": 2})
        with serving_app(create_app(store, settings=cfg)) as url:
            yield Site(url=url, world=world, s3_url=s3_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: run .ci/test-tools (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def signed_in(browser: Any, site: Site, roles: list[str], *, user: str,
              width: str = "laptop") -> Any:
    """A browser page of a user who signed in through the login form."""
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{site.url}/serving/endpoints")
    assert "/login" in page.url
    page.get_by_label("API token").fill(bearer_token(roles, sub=user))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/serving/endpoints")
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def page_csrf(page: Any) -> str:
    return str(page.locator("form.who input[name=csrf]").input_value())


# --------------------------------------------------------------------------- tests


def test_every_page_loads_at_laptop_and_phone_width(browser: Any, site: Site) -> None:
    for width in WIDTHS:
        page = signed_in(browser, site, ["admin"], user="ada", width=width)
        for path in [*PAGES, f"/prompts/experiments/{EXPERIMENT}?environment=prod"]:
            response = page.goto(site.url + path)
            assert response is not None
            assert response.status == 200, path
            assert page.locator("h1").count() == 1
            assert page.locator("main table, main .card, main svg").count() > 0, path
            slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "overview"
            shot(page, f"{slug}-{width}")
        page.context.close()
    assert len(list(ARTIFACTS.glob("*-phone.png"))) >= len(PAGES)


def test_the_overview_run_and_experiment_pages_show_commit_plan_and_metrics(
        browser: Any, site: Site) -> None:
    subject = git(site.world.repo, "log", "-1", "--format=%s").strip()
    page = signed_in(browser, site, ["viewer"], user="vera")
    page.goto(f"{site.url}/")
    for env in ("dev", "stg", "prod"):
        card = page.locator(f"section[aria-labelledby=env-{env}]")
        assert card.locator(".subject").inner_text() == subject
        assert card.locator(".author").inner_text().strip()
    page.locator("section[aria-labelledby=env-prod] dd a").first.click()
    page.wait_for_url(re.compile(r".*/reconcile/runs/\d+$"))
    assert page.locator("ul.specs li").count() > 0
    assert "ServingEndpoint prod/support-chat" in page.locator("ul.specs").inner_text()
    diff = page.locator("details.object-diff").first
    assert not diff.locator("pre.diff").is_visible()  # folded, as in a PR comment
    diff.locator("summary").click()
    assert diff.locator("pre.diff span.add").first.is_visible()
    shot(page, "run-plan-laptop")
    page.goto(f"{site.url}/prompts/experiments/support-greeting-v1-vs-v2?environment=stg")
    assert "Prometheus is not configured" in page.locator("[data-metrics]").inner_text()
    winner = page.locator("tr.winner")
    assert winner.count() == 1
    assert "support-greeting-v2" in winner.inner_text()
    assert page.locator("table.variants tbody tr").count() == 2
    shot(page, "experiment-concluded-laptop")
    page.context.close()


def test_a_filter_narrows_the_models(browser: Any, site: Site) -> None:
    page = signed_in(browser, site, ["viewer"], user="vera")
    page.goto(f"{site.url}/catalog/models")
    rows = page.locator("main tbody tr")
    everything = rows.count()
    page.get_by_label("Type").select_option("adapter")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*type=adapter.*"))
    assert rows.count() < everything
    assert rows.count() == 1
    assert "sql-adapter" in rows.first.inner_text()
    page.context.close()


def _files(tmp_path: Path, first: str = "special_tokens_map.json") -> list[str]:
    paths = []
    for name, body in ((first, b"{\"a\": 1}"), ("notes.txt", b"# notes\n" * 5000)):
        (tmp_path / name).write_bytes(body)
        paths.append(str(tmp_path / name))
    return paths


def _upload(page: Any, files: list[str]) -> str:
    """Choose ``files`` in the page's upload form, send them; the commit it shows."""
    form = page.locator("form[data-upload]").first
    form.locator("input[type=file]").set_input_files(files)
    form.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_selector("form[data-finished=true]")
    result = form.locator(".result")
    assert "2 file(s) uploaded and recorded" in result.inner_text(), result.inner_text()
    assert form.locator(".progress li").count() == 2
    assert form.locator("progress").get_attribute("value") == "100"
    commit = result.get_attribute("data-commit")
    assert commit is not None
    return commit


def _keys(site: Site) -> set[str]:
    listing = boto3.client("s3", endpoint_url=site.s3_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing"
                           ).list_objects_v2(Bucket=BUCKET)
    return {obj["Key"] for obj in listing.get("Contents", [])}


def test_upload_several_files_shows_the_commit(browser: Any, site: Site,
                                               tmp_path: Path) -> None:
    page = signed_in(browser, site, ["admin"], user="ada")
    page.goto(f"{site.url}/catalog/models/support-chat@1.3.0")
    commit = _upload(page, _files(tmp_path))
    shot(page, "upload-done-laptop")
    assert {"models/support-chat/1.3.0/special_tokens_map.json",
            "models/support-chat/1.3.0/notes.txt"} <= _keys(site)
    shown = git(site.world.repo, "show", commit, "--", "models/")
    assert "special_tokens_map.json" in shown
    assert "notes.txt" in shown
    page.context.close()


def test_register_a_model_then_upload_its_files(browser: Any, site: Site,
                                                tmp_path: Path) -> None:
    page = signed_in(browser, site, ["admin"], user="ada")
    page.goto(f"{site.url}/catalog/models")
    page.get_by_role("link", name="Register a model").click()
    page.get_by_label("Name", exact=True).fill("ticket-triage")
    page.get_by_label("Version (semver)").fill("0.1.0")
    page.get_by_label("Type", exact=True).select_option("base")
    page.get_by_label("Owner team").fill("nlp-platform")
    shot(page, "catalog-models-new-laptop")
    page.get_by_role("button", name="Register (a commit)").click()
    page.wait_for_selector("code.commit")
    created = page.locator("code.commit").inner_text()
    assert "ticket-triage" in git(site.world.repo, "show", "--name-only", created)
    (tmp_path / "README.md").write_text("# no\n")
    form = page.locator("form[data-upload]").first
    form.locator("input[type=file]").set_input_files([str(tmp_path / "README.md")])
    form.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_selector("form[data-finished=true]")
    refused = form.locator(".result").inner_text()
    assert "README.md" in refused
    assert "disallowed extension" in refused  # the seed's rule, said by the server
    page.evaluate("document.querySelector('form[data-upload]').dataset.finished = ''")
    commit = _upload(page, _files(tmp_path, "config.json"))  # a base model needs it
    assert git(site.world.repo, "rev-parse", f"{commit}^").strip() == created
    assert "models/ticket-triage/0.1.0/notes.txt" in _keys(site)
    shot(page, "catalog-models-new-done-laptop")
    page.context.close()


def test_rollback_and_conclude_produce_commits(browser: Any, site: Site) -> None:
    page = signed_in(browser, site, ["admin"], user="ada")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{site.url}/serving/endpoints/support-chat?environment=prod")
    page.get_by_role("button", name="Roll back support-chat").click()
    page.wait_for_selector("code.commit")
    commit = page.locator("code.commit").inner_text()
    assert page.locator("code.branch").inner_text().startswith("llmops/rollback/")
    assert "max: 4" in git(site.world.repo, "show", f"{commit}:endpoints/prod/support-chat.yaml")
    shot(page, "rollback-done-laptop")

    page.goto(f"{site.url}/prompts/experiments/{EXPERIMENT}?environment=prod")
    page.get_by_label("Winner").select_option("support-greeting-v3")
    page.get_by_label("Notes").fill("v3 wins on follow-ups.")
    page.get_by_role("button", name="Conclude").click()
    page.wait_for_selector("code.commit")
    commit = page.locator("code.commit").inner_text()
    text = git(site.world.repo, "show", f"{commit}:experiments/{EXPERIMENT}.yaml")
    assert "winner: support-greeting-v3" in text
    page.context.close()


def test_a_viewer_has_no_write_buttons_and_its_post_is_403(browser: Any, site: Site) -> None:
    page = signed_in(browser, site, ["viewer"], user="vera")
    page.goto(f"{site.url}/serving/endpoints/support-chat?environment=prod")
    assert page.get_by_role("button", name=re.compile("Roll back")).count() == 0
    page.goto(f"{site.url}/prompts/experiments/{EXPERIMENT}?environment=prod")
    assert page.get_by_role("button", name="Conclude").count() == 0
    page.goto(f"{site.url}/catalog/models/support-chat")
    assert page.locator("form[data-upload]").count() == 0
    response = page.request.post(f"{site.url}/serving/endpoints/support-chat/rollback",
                                 form={"csrf": page_csrf(page), "environment": "prod"})
    assert response.status == 403
    assert "serving:rollback" in response.text()
    page.context.close()


def test_a_form_without_its_csrf_token_is_refused(browser: Any, site: Site) -> None:
    page = signed_in(browser, site, ["admin"], user="ada")
    page.goto(f"{site.url}/serving/endpoints/support-chat?environment=prod")
    before = git(site.world.repo, "for-each-ref")
    response = page.request.post(f"{site.url}/serving/endpoints/support-chat/rollback",
                                 form={"environment": "prod"})
    assert response.status == 403
    assert "CSRF" in response.text()
    assert git(site.world.repo, "for-each-ref") == before
    page.context.close()


def test_the_overview_refreshes_itself_when_a_run_finishes(browser: Any, site: Site) -> None:
    page = signed_in(browser, site, ["viewer"], user="vera")
    page.goto(f"{site.url}/")
    page.wait_for_timeout(500)  # the first poll has recorded the newest run
    run = state.start_run(site.world.store, "dev", "e" * 40)
    state.finish_run(site.world.store, run.id, state.RunResult.FAILED, error="image pull")
    page.wait_for_selector("#live:not([hidden])")
    assert f"Run #{run.id}" in page.locator("#live").inner_text()
    assert "image pull" in page.locator("main").inner_text()
    page.context.close()


def test_up_prints_the_dashboard_url_and_it_serves_the_login(tmp_path: Path) -> None:
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"),
           "LLMOPS_DAEMON__INTERVAL_SECONDS": "3600"}
    with llmops_process("up", "--api-port", "0", env=env) as proc:
        assert proc.stdout is not None
        found = None
        while found is None:
            line = proc.stdout.readline()
            assert line, "llmops up ended before it printed the dashboard URL"
            found = re.search(r"Dashboard\s+(http://\S+/)", line)
        with httpx.Client(timeout=10) as client:
            first = client.get(found.group(1) + "costs")
            assert first.status_code == 303
            assert first.headers["location"] == "/login?next=%2Fcosts"
            login = client.get(found.group(1) + "login")
            assert login.status_code == 200
            assert "API token" in login.text
        stop(proc)
