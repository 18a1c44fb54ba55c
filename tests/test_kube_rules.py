"""The `kubernetes` actuator's rules that need no server: the ApplySet's identity and
parent, quantities as values, and run counts that add up to the objects of a pass."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from llmops.engine import manifest
from llmops.engine.actuate.base import ActPlan, ObjectOutcome, Outcome
from llmops.engine.actuate.kube_applyset import ApplySet, managed_by
from llmops.engine.plan import diff
from llmops.engine.run import record
from llmops.engine.spec import quantity, schema
from llmops.engine.types import ResourceKey

DEP = ResourceKey("apps", "Deployment", "team-dev", "chat")
CM = ResourceKey("", "ConfigMap", "team-dev", "chat-prompt")
NS = ResourceKey("", "Namespace", "", "team-dev")


# --------------------------------------------------------------------------- ApplySet


def test_two_specs_repos_have_two_applysets_in_one_environment() -> None:
    one = ApplySet("dev", "https://git.example.com/a/specs.git", "default")
    two = ApplySet("dev", "https://git.example.com/b/specs.git", "default")
    assert one.name != two.name
    assert one.id != two.id
    assert one.id != manifest.applyset_id("dev")
    assert one.id.startswith("applyset-")
    assert one.id.endswith("-v1")
    assert len(one.id) <= 63
    assert ApplySet("dev", "https://git.example.com/a/specs.git", "default").id == one.id
    assert ApplySet("dev", "https://git.example.com/a/specs.git", "other").id != one.id


def test_the_parent_lists_group_kinds_namespaces_and_tooling() -> None:
    aset = ApplySet("dev", "https://user:tok3n@git.example.com/a.git", "default")
    parent = aset.parent([DEP, CM, NS])
    assert parent["metadata"]["labels"]["applyset.kubernetes.io/id"] == aset.id
    notes = parent["metadata"]["annotations"]
    assert notes["applyset.kubernetes.io/tooling"] == "llmops/v1"
    assert notes["applyset.kubernetes.io/contains-group-kinds"] == (
        "ConfigMap,Deployment.apps,Namespace"
    )
    assert notes["applyset.kubernetes.io/additional-namespaces"] == "team-dev"
    assert "tok3n" not in notes["llmops.io/repository"]
    assert aset.listed(parent) == ({"ConfigMap", "Deployment.apps", "Namespace"}, {"team-dev"})
    assert aset.foreign_tooling(parent) == ""
    kubectl_made = {
        "metadata": {"annotations": {"applyset.kubernetes.io/tooling": "kubectl/v1.33.0"}}
    }
    assert aset.foreign_tooling(kubectl_made) == "kubectl/v1.33.0"


def test_members_carry_the_set_id_when_written_and_the_logical_id_when_read() -> None:
    aset = ApplySet("dev", "file:///specs", "default")
    rendered = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "x",
            "namespace": "team-dev",
            "labels": {manifest.APPLYSET_LABEL: manifest.applyset_id("dev"), "a": "b"},
        },
    }
    written = aset.physical(rendered)
    assert written["metadata"]["labels"] == {manifest.APPLYSET_LABEL: aset.id, "a": "b"}
    assert aset.logical(written) == rendered
    assert rendered["metadata"]["labels"][manifest.APPLYSET_LABEL] == manifest.applyset_id("dev")


def test_only_objects_llmops_applied_are_managed_by_it() -> None:
    def obj(*entries: tuple[str, str]) -> dict[str, object]:
        return {
            "metadata": {"managedFields": [{"manager": m, "operation": op} for m, op in entries]}
        }

    assert managed_by(obj(("llmops", "Apply")), "llmops")
    assert not managed_by(obj(("kubectl-create", "Update")), "llmops")
    assert not managed_by(obj(("llmops", "Update")), "llmops")
    assert not managed_by({"metadata": {}}, "llmops")


# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("4000m", Decimal(4)),
        ("0.5", Decimal("0.5")),
        ("500m", Decimal("0.5")),
        ("24Gi", Decimal(24 * 1024**3)),
        ("24576Mi", Decimal(24 * 1024**3)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("100n", Decimal("1E-7")),
        (".5", Decimal("0.5")),
        (2, Decimal(2)),
        (0.25, Decimal("0.25")),
    ],
)
def test_quantities_parse_to_their_value(text: object, value: Decimal) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "4 cores", "Gi", "1.2.3", "0x10", True, None, "1KB"])
def test_non_quantities_do_not_parse(text: object) -> None:
    assert quantity.parse(text) is None


def test_a_yaml_number_is_a_quantity_as_kubernetes_takes_it() -> None:
    res = schema.Resources.model_validate({"cpu": 0.5, "memory": "4Gi"})
    assert res.cpu == "0.5"
    assert schema.Resources.model_validate({"cpu": 2}).cpu == "2"
    with pytest.raises(ValidationError, match="cpu"):
        schema.Resources.model_validate({"cpu": "two"})
    with pytest.raises(ValidationError, match="cpu"):
        schema.Resources.model_validate({"cpu": True})


def test_canonical_quantities_from_the_server_are_no_change() -> None:
    def dep(cpu: str, memory: str) -> dict[str, object]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "team-dev"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "resources": {
                                    "requests": {"cpu": cpu, "memory": memory},
                                    "limits": {"cpu": cpu, "memory": memory},
                                },
                            }
                        ]
                    }
                }
            },
        }

    same = diff.diff_live([dep("4000m", "24576Mi")], [dep("4", "24Gi")])
    assert [e.action.value for e in same.entries] == ["unchanged"]
    changed = diff.diff_live([dep("4500m", "24Gi")], [dep("4", "24Gi")])
    assert [c.path for e in changed.entries for c in e.changes] == [
        "spec.template.spec.containers[0].resources.requests.cpu",
        "spec.template.spec.containers[0].resources.limits.cpu",
    ]


# --------------------------------------------------------------------------- run counts


def test_run_counts_add_up_to_the_objects_of_the_pass() -> None:
    desired = {DEP: {}, CM: {}, NS: {}}
    gone = ResourceKey("", "Service", "team-dev", "old")
    plan = ActPlan("dev", "abc", desired, {DEP: "configured", CM: "configured"}, (gone,))
    outcomes = {
        DEP: ObjectOutcome(Outcome.CONFIGURED),
        CM: ObjectOutcome(Outcome.UNCHANGED, "unchanged (server-side dry run)"),
        NS: ObjectOutcome(Outcome.UNCHANGED),
        gone: ObjectOutcome(Outcome.DELETED),
    }
    counts = record.run_counts(plan, outcomes)
    assert (counts.configured, counts.unchanged, counts.deleted) == (1, 2, 1)
    assert sum(counts.as_dict().values()) == len(desired) + len(plan.delete)
    # An actuator that reports only its writes (hydrate): the rest is unchanged.
    only_writes = record.run_counts(
        plan, {DEP: ObjectOutcome(Outcome.CONFIGURED), CM: ObjectOutcome(Outcome.CONFIGURED)}
    )
    assert (only_writes.configured, only_writes.unchanged) == (2, 1)


def test_int_or_string_ports_defaults_and_empty_lists_are_no_change() -> None:
    desired = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "chat", "namespace": "team-dev"},
        "spec": {
            "ports": [{"name": "http", "port": 80, "targetPort": "8000"}],
            "selector": {"app": "chat"},
            "externalIPs": [],
        },
    }
    live = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "chat", "namespace": "team-dev", "uid": "u1"},
        "spec": {
            "ports": [{"name": "http", "port": 80, "targetPort": 8000, "protocol": "TCP"}],
            "selector": {"app": "chat"},
            "type": "ClusterIP",
            "clusterIP": "10.0.0.12",
            "sessionAffinity": "None",
        },
    }
    assert [e.action.value for e in diff.diff_live([desired], [live]).entries] == ["unchanged"]
    moved = {
        **desired,
        "spec": {**desired["spec"], "ports": [{"name": "http", "port": 80, "targetPort": "8001"}]},
    }
    assert [c.path for e in diff.diff_live([moved], [live]).entries for c in e.changes] == [
        "spec.ports[0].targetPort"
    ]
