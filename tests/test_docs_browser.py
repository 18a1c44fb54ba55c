"""The API's interactive docs (Swagger UI) in a real browser with no internet.

Debian's chromium through Playwright (installed by ``.ci/test-tools``), against
the app on loopback: the page must render every operation from the vendored
assets alone; any request to another host or any console error fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_dashboard_browser import browser  # noqa: F401 (the chromium fixture)

from conftest import serving_app
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    with Store(f"sqlite:///{tmp_path / 'llmops.db'}") as store:
        store.migrate()
        with serving_app(create_app(store, settings=settings.load())) as url:
            yield url


def test_swagger_ui_renders_every_operation_offline(browser: Any,  # noqa: F811
                                                    base_url: str) -> None:
    page = browser.new_page()
    foreign: list[str] = []
    errors: list[str] = []
    here = urlsplit(base_url).netloc
    page.on("request", lambda r: foreign.append(r.url)
            if urlsplit(r.url).netloc not in (here, "") else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{base_url}/llm-ops/v1/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        operations = page.locator(".opblock").count()
    finally:
        page.close()
    schema_paths = len(create_app(Store("sqlite://"), settings=settings.load())
                       .openapi()["paths"])
    assert operations >= schema_paths
    assert foreign == []
    assert errors == []
