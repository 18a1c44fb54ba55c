"""The wheel installs only `llmops/`, ships the template, and the code passes its quality gates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_wheel_holds_only_the_llmops_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("llmops_gitops-*.whl")  # "llmops" on PyPI is someone else's
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"llmops"}
    assert len(dist_info) == 1
    assert "llmops/__init__.py" not in names
    assert "llmops/engine/specs_repo_template/llmops.yaml" in names
    assert "llmops/engine/specs_repo_template/.github/workflows/llmops.yaml" in names
    assert "llmops/cli/__init__.py" in names
    assert "llmops/router/proxy.py" in names  # the prompt router ships in the same wheel
    assert "llmops/api/dashboard/templates/base.html" in names  # the dashboard's pages
    assert "llmops/api/dashboard/static/app.js" in names
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE",
                 "VENDORED.md"):  # the API docs' assets, served by the app (no CDN)
        assert f"llmops/api/swagger_ui/{name}" in names, name
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info.pop()}/entry_points.txt").decode()
    assert "llmops = llmops.cli:main" in entry_points
