"""deploy/argocd as Argo CD reads it: the fields Argo CD knows, the sync window the specs
repo's policy sets, and (slow tier) Argo CD's own CRDs in a real kube-apiserver accepting
every object with server-side dry-run and strict field validation.

The real control plane is the session's ``real_kube`` (``tests/realkube.py``: the
``../shared/kube`` bundle), the CRDs come from ``../shared/argocd/crds``; they are
installed for this module only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import realkube
import yaml
from realkube import RealKube

from conftest import ROOT
from llmops.engine.spec import schema, validate

ARGOCD = ROOT / "deploy" / "argocd"
CRDS = realkube.shared("argocd/crds")
CRON_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
PLURALS = {"Application": "applications", "ApplicationSet": "applicationsets",
           "AppProject": "appprojects"}


def argo_objects() -> list[dict[str, Any]]:
    docs = [d for f in sorted(ARGOCD.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    # plugin.yaml's ConfigManagementPlugin is the CMP sidecar's config file, not an object
    return [d for d in docs if str(d.get("apiVersion", "")).startswith("argoproj.io/")
            and d["kind"] in PLURALS]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in argo_objects() if d["kind"] == kind]


def applications() -> list[dict[str, Any]]:
    """The Applications as written, and the one the ApplicationSet's template makes."""
    (appset,) = by_kind("ApplicationSet")
    return [*by_kind("Application"), appset["spec"]["template"]]


def sync_window(window: schema.ChangeWindow) -> dict[str, Any]:
    """The Argo CD allow window for one change window of a Policy (same days, hours, zone)."""
    days = ",".join(str(CRON_DAYS[d]) for d in window.days)
    start, end = window.start, window.end
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    minutes += 24 * 60 if minutes <= 0 else 0
    hours, rest = divmod(minutes, 60)
    duration = f"{hours}h" + (f"{rest}m" if rest else "")
    if days == "1,2,3,4,5":
        days = "1-5"
    return {"kind": "allow", "schedule": f"{start.minute} {start.hour} * * {days}",
            "duration": duration, "timeZone": window.timezone}


def test_the_applicationset_uses_go_templates_that_fail_on_a_missing_key() -> None:
    (appset,) = by_kind("ApplicationSet")
    spec = appset["spec"]
    assert spec["goTemplate"] is True
    assert spec["goTemplateOptions"] == ["missingkey=error"]
    assert "goPlaceholders" not in spec
    text = yaml.safe_dump(spec["template"])
    assert "{{.env}}" in text
    assert "{{env}}" not in text


def test_every_application_refreshes_by_path_retries_and_cascades_on_purpose() -> None:
    for app in applications():
        meta = app["metadata"]
        assert meta["annotations"]["argocd.argoproj.io/manifest-generate-paths"] == "."
        assert meta["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
        retry = app["spec"]["syncPolicy"]["retry"]
        assert retry["limit"] >= 3
        assert set(retry["backoff"]) == {"duration", "factor", "maxDuration"}


def test_team_namespaces_survive_an_application_delete() -> None:
    from llmops.renderers import render

    template = validate.load_and_validate(ROOT / "specs_repo_template")
    objects = render.render_environment(template, "prod", revision="")
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    assert namespaces
    for ns in namespaces:
        options = ns["metadata"]["annotations"]["argocd.argoproj.io/sync-options"].split(",")
        assert {"Delete=false", "Prune=false"} <= set(options)


def test_the_project_sync_windows_are_the_template_change_windows() -> None:
    spec_set = validate.load_and_validate(ROOT / "specs_repo_template")
    windows = [w for policy in spec_set.of(schema.PolicySpec)
               for w in policy.spec.changeWindows]
    assert windows
    (project,) = by_kind("AppProject")
    allow = [{k: w[k] for k in ("kind", "schedule", "duration", "timeZone")}
             for w in project["spec"]["syncWindows"] if w["kind"] == "allow"]
    assert allow == [sync_window(w) for w in windows]
    assert all(w["applications"] == ["llmops-prod*"] for w in project["spec"]["syncWindows"])


# --------------------------------------------------------------------------- real cluster


@pytest.fixture(scope="module")
def cluster(real_kube: RealKube) -> Iterator[Any]:
    """The session's real kube-apiserver (``tests/realkube.py``) with Argo CD's CRDs
    established for this module, and removed after it."""
    import kubernetes

    if not CRDS.is_dir():
        pytest.fail(f"Argo CD's CRDs are missing ({CRDS})")
    client = real_kube.api_client()
    extensions = kubernetes.client.ApiextensionsV1Api(client)
    names = {f"{p}.argoproj.io" for p in PLURALS.values()}
    for crd in sorted(CRDS.glob("*.yaml")):
        _created(extensions.create_custom_resource_definition, yaml.safe_load(crd.read_text()))
    _wait_established(extensions, names)
    _created(real_kube.core().create_namespace, {"metadata": {"name": "argocd"}})
    try:
        yield client
    finally:
        for name in names:
            _created(extensions.delete_custom_resource_definition, name)


def _created(call: Any, *args: Any) -> None:
    """``call(*args)``; an object that already exists (409) or is already gone (404) is
    fine."""
    import kubernetes

    try:
        call(*args)
    except kubernetes.client.ApiException as exc:
        if exc.status not in (404, 409):
            raise


def _wait_established(extensions: Any, names: set[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        ready = {c.metadata.name for c in extensions.list_custom_resource_definition().items
                 if any(x.type == "Established" and x.status == "True"
                        for x in (c.status.conditions or []))}
        if names <= ready or time.monotonic() > deadline:
            assert names <= ready, f"CRDs not established: {sorted(names - ready)}"
            return
        time.sleep(0.5)


def _dry_run(client: Any, obj: dict[str, Any]) -> Any:
    import kubernetes

    group, version = obj["apiVersion"].split("/")
    return kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
        group, version, obj["metadata"]["namespace"], PLURALS[obj["kind"]], obj,
        dry_run="All", field_validation="Strict")


@pytest.mark.slow
def test_argo_cd_accepts_every_object_strictly(cluster: Any) -> None:
    objects = argo_objects()
    assert sorted(o["kind"] for o in objects) == [
        "AppProject", "Application", "Application", "ApplicationSet"]
    for obj in objects:
        created = _dry_run(cluster, obj)
        assert created["metadata"]["name"] == obj["metadata"]["name"]


@pytest.mark.slow
def test_strict_validation_rejects_what_argo_cd_does_not_know(cluster: Any) -> None:
    """The check above can fail: yesterday's `goPlaceholders` is refused by name."""
    import kubernetes

    (appset,) = by_kind("ApplicationSet")
    wrong = {**appset, "spec": {**appset["spec"], "goPlaceholders": True}}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        _dry_run(cluster, wrong)
    assert refused.value.status in (400, 422)
    assert "goPlaceholders" in str(refused.value.body)
