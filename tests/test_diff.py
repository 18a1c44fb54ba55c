"""The diff engine: normalisation against live objects, revision diffs, and secret masking."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from llmops.cli import plan_cmd
from llmops.engine import manifest
from llmops.engine.plan import changeset, diff, planner
from llmops.engine.plan.changeset import Action, FieldOp
from llmops.engine.types import ResourceKey

DEPLOY_KEY = ResourceKey("apps", "Deployment", "team-prod", "chat")


def deployment(replicas: int = 2, image: str = "vllm/vllm-openai:v0.8.5") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "chat", "namespace": "team-prod",
            "labels": {"llmops.io/kind": "ServingEndpoint", "llmops.io/spec": "chat"},
            "annotations": {"llmops.io/source-commit": "a" * 40,
                            "llmops.io/spec-hash": "1" * 64},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "chat"}},
            "template": {
                "metadata": {"labels": {"app": "chat"}},
                "spec": {
                    "securityContext": {},
                    "containers": [{
                        "name": "server", "image": image,
                        "args": ["--port=8000"],
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "resources": {"limits": {"cpu": "4", "memory": "24Gi",
                                                 "nvidia.com/gpu": 1}},
                        "env": [{"name": "MODEL_VERSION", "value": "1.2.0"}],
                    }],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "chat", "namespace": "team-prod"},
        "spec": {"selector": {"app": "chat"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8000}]},
    }


def as_live(obj: dict[str, Any]) -> dict[str, Any]:
    """What an API server returns for ``obj``: server fields and defaults added."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update({
        "uid": "9b1c7a0e-0000-4000-8000-000000000001", "resourceVersion": "48213",
        "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "llmops", "operation": "Apply"}],
    })
    meta.setdefault("annotations", {})[diff.LAST_APPLIED_ANNOTATION] = json.dumps(obj)
    live["status"] = {"readyReplicas": 2, "conditions": [{"type": "Available"}]}
    spec = live["spec"]
    if live["kind"] == "Deployment":
        spec.update({"progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%",
                                                    "maxUnavailable": "25%"}}})
        pod = spec["template"]["spec"]
        pod.update({"dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30})
        for c in pod["containers"]:
            c.update({"terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"})
            for port in c["ports"]:
                port["protocol"] = "TCP"
        # A sidecar injected by a mesh: another manager's list item.
        pod["containers"].append({"name": "istio-proxy", "image": "istio/proxyv2:1.22"})
    if live["kind"] == "Service":
        spec.update({"clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
                     "sessionAffinity": "None", "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                     "type": "ClusterIP"})
        for port in spec["ports"]:
            port["protocol"] = "TCP"
    return live


def secret(password: str, token: str = "dG9rZW4=") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "team-prod"},
            "type": "Opaque", "data": {"password": password, "token": token},
            "stringData": {"url": f"postgres://app:{password}@db/app"}}


# --------------------------------------------------------------------------- against live


def test_unchanged_against_live_object_with_server_fields() -> None:
    desired = [deployment(), service()]
    changes = diff.diff_live(desired, [as_live(o) for o in desired])
    assert [e.action for e in changes.entries] == [Action.UNCHANGED, Action.UNCHANGED]
    assert not changes.has_changes


def test_namespace_defaulting_against_live() -> None:
    desired = service()
    del desired["metadata"]["namespace"]
    live = as_live(service())
    live["metadata"]["namespace"] = "default"
    changes = diff.diff_live([desired], [live])
    assert [(e.key.namespace, e.action) for e in changes.entries] == [
        ("default", Action.UNCHANGED)]


def test_field_change_against_live_is_configured_with_path() -> None:
    live = as_live(deployment(replicas=2))
    changes = diff.diff_live([deployment(replicas=3, image="vllm/vllm-openai:v0.9.0")], [live])
    entry = changes.get(DEPLOY_KEY)
    assert entry is not None
    assert entry.action == Action.CONFIGURED
    by_path = {c.path: c for c in entry.changes}
    assert set(by_path) == {"spec.replicas", "spec.template.spec.containers[0].image"}
    assert (by_path["spec.replicas"].before, by_path["spec.replicas"].after) == (2, 3)
    assert by_path["spec.replicas"].op == FieldOp.CHANGED


def test_live_drift_in_a_field_llmops_sets_is_reported() -> None:
    live = as_live(deployment())
    live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "9.9.9"
    entry = diff.diff_live([deployment()], [live]).get(DEPLOY_KEY)
    assert entry is not None
    assert entry.action == Action.CONFIGURED
    assert [c.path for c in entry.changes] == [
        "spec.template.spec.containers[0].env[0].value"]


def test_created_and_deleted_against_live() -> None:
    orphan = as_live(service())
    orphan["metadata"]["name"] = "old"
    changes = diff.diff_live([deployment()], [orphan])
    assert {(e.key.kind, e.key.name): e.action for e in changes.entries} == {
        ("Deployment", "chat"): Action.CREATED, ("Service", "old"): Action.DELETED}
    assert changes.counts()[Action.CREATED] == 1


# --------------------------------------------------------------------------- between revisions


def test_revisions_ignore_source_commit() -> None:
    head = deployment()
    head["metadata"]["annotations"]["llmops.io/source-commit"] = "b" * 40
    changes = diff.diff_revisions([deployment()], [head])
    assert [e.action for e in changes.entries] == [Action.UNCHANGED]


def test_revisions_report_removed_and_added_fields() -> None:
    base, head = deployment(), deployment()
    del head["spec"]["template"]["spec"]["containers"][0]["args"]
    head["metadata"]["labels"]["tier"] = "gold"
    entry = diff.diff_revisions([base], [head]).get(DEPLOY_KEY)
    assert entry is not None
    assert entry.action == Action.CONFIGURED
    ops = {c.path: c.op for c in entry.changes}
    assert ops == {"metadata.labels.tier": FieldOp.ADDED,
                   "spec.template.spec.containers[0].args": FieldOp.REMOVED}
    text = diff.unified(entry)
    assert "+    tier: gold" in text
    assert "-        - --port=8000" in text


def test_revisions_created_and_deleted() -> None:
    changes = diff.diff_revisions([service()], [deployment()])
    assert {e.key.kind: e.action for e in changes.entries} == {
        "Deployment": Action.CREATED, "Service": Action.DELETED}
    created = changes.get(DEPLOY_KEY)
    assert created is not None
    assert created.owner == ("ServingEndpoint", "chat")
    assert diff.unified(created).splitlines()[0] == "--- /dev/null"


# --------------------------------------------------------------------------- secrets


def _everything(changes: changeset.ChangeSet) -> str:
    """Every way a ChangeSet reaches a user: field changes, unified diffs, repr."""
    parts = [repr(changes)]
    for entry in changes.entries:
        parts.append(diff.unified(entry))
        parts.extend(c.describe() for c in entry.changes)
        parts.append(json.dumps([entry.before, entry.after], default=str))
    return "\n".join(parts)


@pytest.mark.parametrize("mode", ["revisions", "live"])
def test_secret_values_are_masked(mode: str) -> None:
    before, after = secret("czNjcjN0LW9sZA=="), secret("czNjcjN0LW5ldw==")
    if mode == "revisions":
        changes = diff.diff_revisions([before], [after])
    else:
        changes = diff.diff_live([after], [as_secret_live(before)])
    entry = changes.entries[0]
    assert entry.action == Action.CONFIGURED
    paths = {c.path: c for c in entry.changes}
    assert set(paths) == {"data.password", "stringData.url"}
    assert all(c.sensitive and c.before == diff.MASK and c.after == diff.MASK
               for c in entry.changes)
    assert "data.password: sensitive value changed" in diff.unified(entry)
    shown = _everything(changes)
    for value in ("czNjcjN0LW9sZA==", "czNjcjN0LW5ldw==", "dG9rZW4=", "postgres://"):
        assert value not in shown
    # Keys stay visible: a reviewer sees which entry changed.
    assert "password" in shown


def as_secret_live(obj: dict[str, Any]) -> dict[str, Any]:
    live = copy.deepcopy(obj)
    live["metadata"].update({"uid": "1", "resourceVersion": "2"})
    return live


def test_created_and_deleted_secret_are_masked() -> None:
    changes = diff.diff_revisions([secret("b2xk")], [{**secret("bmV3"), "metadata": {
        "name": "db2", "namespace": "team-prod"}}])
    shown = _everything(changes)
    assert "b2xk" not in shown
    assert "bmV3" not in shown
    assert diff.MASK in shown


def test_annotated_sensitive_fields_are_masked() -> None:
    base, head = deployment(), deployment()
    for obj, token in ((base, "tok-old-123"), (head, "tok-new-456")):
        obj["metadata"]["annotations"][manifest.SENSITIVE_ANNOTATION] = (
            "spec.template.spec.containers[*].env[1].value")
        obj["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "API_TOKEN", "value": token})
    changes = diff.diff_revisions([base], [head])
    entry = changes.entries[0]
    assert [(c.path, c.sensitive, c.before, c.after) for c in entry.changes] == [
        ("spec.template.spec.containers[0].env[1].value", True, diff.MASK, diff.MASK)]
    shown = _everything(changes)
    assert "tok-old-123" not in shown
    assert "tok-new-456" not in shown
    # The unmasked neighbour stays readable.
    assert "1.2.0" in diff.unified(entry) or "1.2.0" in json.dumps(entry.after)


def test_mask_and_parse_path() -> None:
    assert diff.parse_path("spec.containers[0].env[*].value") == (
        "spec", "containers", "0", "env", "*", "value")
    assert diff.parse_path("a..b") == ()
    masked = diff.mask(secret("c2VjcmV0"))
    assert masked["data"] == {"password": diff.MASK, "token": diff.MASK}
    assert masked["type"] == "Opaque"


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_secret_values_never_reach_plan_output(fmt: str) -> None:
    changes = diff.diff_revisions([secret("czNjcjN0LW9sZA==")],
                                  [secret("czNjcjN0LW5ldw==", token="bmV3LXRva2Vu")])
    env = planner.EnvironmentPlan("prod", (), changes, ())
    result = planner.Plan("a" * 40, "b" * 40, (env,), (), (), datetime(2026, 1, 14, tzinfo=UTC))
    out = io.StringIO()
    plan_cmd.RENDERERS[fmt](result, out)
    text = out.getvalue()
    assert "Secret/team-prod/db" in text
    for value in ("czNjcjN0LW9sZA==", "czNjcjN0LW5ldw==", "dG9rZW4=", "bmV3LXRva2Vu",
                  "postgres://"):
        assert value not in text
    assert "data.password" in text or '"path": "data.password"' in text


def test_env_vars_named_like_credentials_are_masked() -> None:
    base, head = deployment(), deployment()
    for obj, token in ((base, "hf_oldoldold"), (head, "hf_newnewnew")):
        obj["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "HF_TOKEN", "value": token})
    changes = diff.diff_revisions([base], [head])
    [change] = changes.entries[0].changes
    assert change.sensitive
    shown = _everything(changes)
    assert "hf_oldoldold" not in shown
    assert "hf_newnewnew" not in shown
    assert "MODEL_VERSION" in shown


# --------------------------------------------------------------------------- the live memo


def _live_memo_diff(desired: list[dict[str, Any]], live: list[dict[str, Any]],
                    memo: diff.LiveMemo) -> changeset.ChangeSet:
    return diff.diff_live(desired, live, default_namespace="",
                          ignore_annotations=manifest.REVISION_BOOKKEEPING, memo=memo)


def test_live_memo_reuses_an_unchanged_object_and_still_sees_drift_and_new_renders() -> None:
    memo = diff.LiveMemo()
    objects = [deployment(), service(), secret("cGFzcw==")]
    first = _live_memo_diff(objects, copy.deepcopy(objects), memo)
    assert {e.action for e in first.entries} == {Action.UNCHANGED}
    assert len(memo.entries) == 3

    # Same desired objects, equal live ones: the very entries of last time, masked.
    again = _live_memo_diff(objects, copy.deepcopy(objects), memo)
    assert all(a is b for a, b in zip(again.entries, first.entries, strict=True))
    assert "cGFzcw==" not in json.dumps([e.after for e in again.entries])

    # Someone edits the live Deployment: the same desired object, but drift is seen.
    live = copy.deepcopy(objects)
    live[0]["spec"]["replicas"] = 7
    drifted = _live_memo_diff(objects, live, memo)
    entry = drifted.get(ResourceKey.of(objects[0]))
    assert entry is not None
    assert entry.action is Action.CONFIGURED
    assert [c.path for c in entry.changes] == ["spec.replicas"]

    # A re-rendered (new) object equal in content is diffed again, not taken on trust.
    rerendered = [copy.deepcopy(objects[0]), *objects[1:]]
    rerendered[0]["spec"]["replicas"] = 3
    changed = _live_memo_diff(rerendered, copy.deepcopy(objects), memo)
    entry = changed.get(ResourceKey.of(objects[0]))
    assert entry is not None
    assert entry.action is Action.CONFIGURED

    # Without the memo the answers are the same, entry for entry.
    plain = diff.diff_live(rerendered, copy.deepcopy(objects), default_namespace="",
                           ignore_annotations=manifest.REVISION_BOOKKEEPING)
    assert plain.entries == changed.entries


def test_live_memo_refuses_a_default_namespace() -> None:
    with pytest.raises(ValueError, match="default_namespace"):
        diff.diff_live([service()], [], memo=diff.LiveMemo())


def test_revisions_sharing_objects_diff_like_copies_and_stay_masked() -> None:
    shared = [deployment(), secret("cGFzcw==")]
    base = [*shared, service()]
    changed_service = service()
    changed_service["spec"]["ports"][0]["port"] = 81
    head = [*shared, changed_service]
    fast = diff.diff_revisions(base, head)
    slow = diff.diff_revisions(copy.deepcopy(base), copy.deepcopy(head))
    assert fast.entries == slow.entries
    assert [e.action for e in fast.entries if e.key.kind != "Service"] == [
        Action.UNCHANGED, Action.UNCHANGED]
    assert "cGFzcw==" not in json.dumps([[e.before, e.after] for e in fast.entries])


def test_diff_text_is_the_same_from_libyaml_and_pyyaml(template_copy: Any) -> None:
    """The diffs are dumped by libyaml (10x faster, for the reconciler's recorded plans);
    a reviewer must read exactly the text PyYAML's own emitter writes."""
    from llmops.engine.spec import validate
    from llmops.renderers import render_environment

    specs = validate.load_and_validate(template_copy)
    objects = [o for env in ("dev", "stg", "prod")
               for o in render_environment(specs, env, revision="a" * 40)]
    tricky = {"data": {"trailing": "a line \nanother  \n", "lead": "  indented\nx\n",
                       "long": "word " * 60, "unicode": "grüße → 世界\n", "empty": "",
                       "colon": "key: value", "number-like": "0123", "bool-like": "yes"}}
    for obj in [*objects, tricky]:
        assert diff.to_yaml(obj) == diff.to_yaml(obj, pure=True)
