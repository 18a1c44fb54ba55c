"""The create use cases of the seed's API: register a model, deploy an endpoint, start an
experiment, submit a training job; each one audited commit of a new (or edited) spec file.

Role: turn the seed's request shapes into specs of the resource model and
commit them through ``WriteService`` (same review-branch / direct-commit
rules, audit trail, commit trailers and tenant rule as the other writes):

- ``create_model``: ``models/{name}-{version}.yaml``, stage ``draft``, its
  ``storageUri`` the version's prefix in the model bucket
  (``s3://{bucket}/models/{name}/{version}/``); the seed's free ``metadata``
  gives ``framework``, ``dataClassification``, ``description`` and
  ``baseModel``, and any other key becomes an annotation;
- ``deploy_endpoint``: ``endpoints/{env}/{name}.yaml`` for the model
  (``modelId``: UUID, ``name@version``), route, replicas and autoscaling; an
  endpoint of that name already in the environment gets the new model,
  route and scaling instead (a redeploy);
- ``create_experiment``: an A/B (or A/B/n) ``PromptExperiment`` on the
  endpoint that serves template A (or the one named), ``allocation`` percent
  of the traffic to B;
- ``submit_training_job``: ``training/{name}.yaml``, a ``TrainingJob`` that
  the reconciler renders to a batch/v1 Job.

Every spec carries the owning team (from the request or the model), so the
tenant rule applies before anything is written. The edited repo is
validated as a whole before the commit (``writeback``): a bad field comes
back as ``EditRejected`` with file, line and field of every issue; request
fields that cannot even name a file are ``InvalidRequest`` naming the field.

Input: plain request values (``NewModel``, ``NewEndpoint``, ...) and the
caller. Output: ``Created`` (the commit, and the new spec's id). Callers: the
REST API's create routes (``llmops.api.routes.creates``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from llmops.engine import errors
from llmops.engine.service import lookup
from llmops.engine.service.access import Caller
from llmops.engine.service.writes import Committed, Trail, WriteService, find
from llmops.engine.source import specedits, writeback
from llmops.engine.spec import schema
from llmops.engine.store import catalog, modelfiles
from llmops.engine.types import Kind, SpecKey

API_VERSION = "llmops.io/v1alpha1"
_DNS = re.compile(schema.DNS_LABEL_RE, re.ASCII)
_SEMVER = re.compile(schema.SEMVER_RE, re.ASCII)
_SLUG = re.compile(r"[^a-z0-9-]+")
# Spec field -> the request field it comes from, for the message of a create the repo as
# it stands does not take (``writes.refused``).
MODEL_FIELDS = {"spec.baseModel": "metadata.baseModel"}
ENDPOINT_FIELDS = {"spec.environment": "environment", "spec.modelRef": "modelId",
                   "spec.route": "route", "spec.autoscale": "autoscalePolicy",
                   "spec.resources": "gpu", "spec.promptTemplateRef": "promptTemplateId"}
EXPERIMENT_FIELDS = {"spec.environment": "environment", "spec.endpointRef": "endpointId",
                     "spec.variants": "variants"}
TRAINING_FIELDS = {"spec.environment": "environment", "spec.baseModelRef": "baseModelId",
                   "spec.datasetRef": "datasetId", "spec.resources": "gpu",
                   "spec.outputModel": "outputModel"}
MODEL_KEYS = {"framework", "dataClassification", "data_classification", "description",
              "baseModel", "base_model"}


class InvalidRequest(errors.InvalidInput):
    """A request field cannot make a spec (``details["field"]`` names it)."""


class ConflictingFields(errors.Conflict):
    """Request fields whose values contradict each other (replicas min above max, A/B/n
    weights that do not sum to 100): 409, as no JSON Schema can say it; ``details["field"]``
    names the first of them."""


class NoSingleEndpoint(errors.Conflict):
    """No ``endpointId`` given, and not exactly one endpoint serves template A: the repo as
    it stands cannot say where the experiment goes (409; ``details`` lists candidates)."""


@dataclass(frozen=True, slots=True)
class Created(Committed):
    """A new (or redeployed) spec: the commit that holds it and the spec's id."""

    id: str
    created: bool
    """False when an existing spec was changed (an endpoint redeployed)."""


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class NewModel:
    name: str
    version: str
    type: str
    owner_team: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    model_id: str
    environment: str
    route: str
    min_replicas: int
    max_replicas: int
    autoscale: dict[str, Any] | None = None
    name: str | None = None
    gpu: int | None = None
    gpu_type: str | None = None
    prompt_template_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewExperiment:
    """A/B: ``template_a_id``, ``template_b_id`` and B's ``allocation``; or A/B/n:
    ``variants`` as (template id, weight) pairs, weights summing to 100."""

    template_a_id: str = ""
    template_b_id: str = ""
    allocation: float = 0.0
    variants: tuple[tuple[str, int], ...] = ()
    metric: str = "latency_ms"
    environment: str | None = None
    endpoint_id: str | None = None
    name: str | None = None
    stickiness_header: str | None = None


@dataclass(frozen=True, slots=True)
class NewTrainingJob:
    name: str
    environment: str
    base_model_id: str
    dataset_id: str
    image: str
    output_model: str
    """``name@version`` of the model the job produces."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    gpu: int = 0
    gpu_type: str | None = None
    experiment_url: str | None = None
    owner_team: str | None = None


# --------------------------------------------------------------------------- helpers


def _label(value: str, field_name: str) -> str:
    if not _DNS.fullmatch(value):
        raise InvalidRequest(f"{field_name} {value[:80]!r} must be a DNS-1123 label "
                             "(lowercase letters, digits and '-', at most 63)",
                             details={"field": field_name})
    return value


def _ref(ident: str, field_name: str) -> dict[str, str]:
    """``name@version`` as a model reference."""
    name, _, version = ident.partition("@")
    if not _DNS.fullmatch(name) or not _SEMVER.fullmatch(version):
        raise InvalidRequest(f"{field_name} {ident[:80]!r} must be name@version (a semver)",
                             details={"field": field_name})
    return {"name": name, "version": version}


def _text(spec: dict[str, Any], comment: str) -> str:
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=False,
                                   allow_unicode=True, width=4096)


def _document(kind: str, name: str, labels: dict[str, str], body: dict[str, Any],
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": str(kind), "metadata": meta, "spec": body}


def _entry(key: SpecKey, file: str, spec: dict[str, Any]) -> catalog.CatalogEntry:
    return catalog.CatalogEntry(id=str(key.id), kind=key.kind, environment=key.environment,
                                name=key.name, revision="", file=file, spec=spec,
                                updated_at=datetime.now(UTC))


def _model_fields(metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(spec fields, annotations) from the seed's free-form model ``metadata`` (the base
    model's existence is the caller's to check: ``CreateService._base_model``)."""
    body: dict[str, Any] = {
        "framework": str(metadata.get("framework") or "transformers"),
        "dataClassification": str(metadata.get("dataClassification")
                                  or metadata.get("data_classification") or "internal")}
    if metadata.get("description"):
        body["description"] = str(metadata["description"])
    base = metadata.get("baseModel") or metadata.get("base_model")
    if isinstance(base, str):
        body["baseModel"] = _ref(base, "metadata.baseModel")
    elif isinstance(base, dict):
        body["baseModel"] = {"name": str(base.get("name", "")),
                             "version": str(base.get("version", ""))}
    annotations = {f"llmops.io/{key}"[:253]: (value if isinstance(value, str)
                                               else json.dumps(value, sort_keys=True))
                   for key, value in metadata.items() if key not in MODEL_KEYS}
    return body, annotations


def _autoscale(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """The spec's ``autoscale`` from the seed's ``autoscalePolicy`` (None: the default)."""
    if not policy:
        return None
    for key in ("cpuUtilization", "targetCpuUtilization", "target_cpu_utilization"):
        if key in policy:
            return {"cpuUtilization": policy[key]}
    metric = policy.get("customMetric") or policy.get("metric")
    if isinstance(metric, dict):
        return {"customMetric": metric}
    if isinstance(metric, str):
        target = policy.get("targetAverageValue", policy.get("target", ""))
        return {"customMetric": {"name": metric, "targetAverageValue": str(target)}}
    raise InvalidRequest("autoscalePolicy needs cpuUtilization (percent) or a metric "
                         "with its targetAverageValue", details={"field": "autoscalePolicy"})


def _weights(allocation: float) -> tuple[int, int]:
    """(A, B) weights: ``allocation`` is B's share, a percent (1-99) or a fraction (0-1)."""
    share = allocation * 100 if 0 < allocation < 1 else allocation
    b = round(share)
    if not 0 < b < 100 or abs(share - b) > 1e-9:
        raise InvalidRequest("allocation must be B's share of the traffic: a whole percent "
                             "between 1 and 99, or a fraction such as 0.2",
                             details={"field": "allocation"})
    return 100 - b, b


# --------------------------------------------------------------------------- the service


class CreateService:
    """The create use cases over the write service (see the module docstring)."""

    def __init__(self, writes: WriteService) -> None:
        self.writes = writes
        self.store = writes.store

    def _create(self, caller: Caller, entry: catalog.CatalogEntry, text: str,
                action: str, subject: str, reason: str, fields: dict[str, str]) -> Created:
        """The audited commit of ``text`` as the new file of ``entry``."""
        self.writes.authorize(caller, entry)
        trail = Trail(self.writes.log, caller, entry.key, reason)
        done = self.writes.commit(trail, entry, action, lambda _t: lambda _old: text,
                                  subject, create=True, fields=fields)
        return Created(**asdict(done), id=entry.id, created=True)

    def create_model(self, caller: Caller, new: NewModel) -> Created:
        """A draft Model version whose files are uploaded next (see the module docstring)."""
        name = _label(new.name, "name")
        if not _SEMVER.fullmatch(new.version):
            raise InvalidRequest(f"version {new.version[:40]!r} is not a semver",
                                 details={"field": "version"})
        fields, annotations = _model_fields(new.metadata)
        needs_base = new.type != schema.ModelType.BASE.value
        if needs_base != ("baseModel" in fields):
            raise InvalidRequest(f"a {new.type} model {'needs' if needs_base else 'has no'} "
                                 "metadata.baseModel", details={"field": "metadata.baseModel"})
        self._base_model(fields.get("baseModel"))
        body = {"version": new.version, "type": new.type,
                "ownerTeam": _label(new.owner_team, "owner_team"),
                "storageUri": modelfiles.storage_uri(self.writes.settings.s3.bucket, name,
                                                     new.version),
                **fields, "stage": schema.ModelStage.DRAFT.value}
        spec = _document(Kind.MODEL, name, {"team": new.owner_team}, body, annotations)
        key = SpecKey(Kind.MODEL, "", f"{name}@{new.version}")
        file = f"models/{name}-{new.version}.yaml"
        self._absent(key)
        text = _text(spec, f"Model {name} {new.version}, registered through the API by "
                           f"{caller.user}.\nUpload its files next; they are recorded here.")
        return self._create(caller, _entry(key, file, spec), text, "create",
                            f"Register model {name} {new.version}",
                            f"register {new.type} model {name} {new.version}", MODEL_FIELDS)

    def _base_model(self, ref: dict[str, Any] | None) -> None:
        """``NoSuchSpec`` (404) when ``ref`` names no model of the catalog: which models
        exist is the repo's state, not the request's shape (as deploy's ``modelId``)."""
        if ref is not None:
            find(self.store, Kind.MODEL, f"{ref['name']}@{ref['version']}")

    def _absent(self, key: SpecKey) -> None:
        """``SpecExists`` when the catalog holds ``key``. A spec written but not
        reconciled yet is refused by the commit itself: its file is on the tracked
        branch or on its still-open review branch (a rejected, deleted branch no
        longer counts)."""
        if catalog.get_key(self.store, key) is not None:
            raise writeback.SpecExists(f"{key} already exists", details={"id": str(key.id)})

    def deploy_endpoint(self, caller: Caller, new: NewEndpoint) -> Created:
        """A new endpoint serving the model, or the existing one moved to it."""
        if new.min_replicas > new.max_replicas:
            raise ConflictingFields(f"minReplicas ({new.min_replicas}) is greater than "
                                    f"maxReplicas ({new.max_replicas})",
                                    details={"field": "minReplicas"})
        model = find(self.store, Kind.MODEL, new.model_id)
        env = _label(new.environment, "environment")
        name = _label(new.name or model.base_name, "name")
        fields: dict[str, Any] = {
            "modelRef": {"name": model.base_name, "version": str(model.body.get("version"))},
            "route": new.route, "replicas": {"min": new.min_replicas, "max": new.max_replicas}}
        scale = _autoscale(new.autoscale)
        if scale is not None:
            fields["autoscale"] = scale
        if new.prompt_template_id is not None:
            template = find(self.store, Kind.PROMPT_TEMPLATE, new.prompt_template_id)
            fields["promptTemplateRef"] = template.name
        key = SpecKey(Kind.SERVING_ENDPOINT, env, name)
        try:
            current = find(self.store, Kind.SERVING_ENDPOINT, str(key.id))
        except lookup.NoSuchSpec:
            return self._new_endpoint(caller, key, model, fields, new)
        self.writes.authorize(caller, current)
        trail = Trail(self.writes.log, caller, key,
                       f"deploy {model.name} on {new.route} ({new.min_replicas}-"
                       f"{new.max_replicas} replicas)")
        done = self.writes.commit(
            trail, current, "deploy",
            lambda t: specedits.set_fields(t.kind, t.name, None, fields),
            f"Deploy model {model.name} on endpoint {env}/{name}", fields=ENDPOINT_FIELDS)
        return Created(**asdict(done), id=str(key.id), created=False)

    def _new_endpoint(self, caller: Caller, key: SpecKey, model: catalog.CatalogEntry,
                      fields: dict[str, Any], new: NewEndpoint) -> Created:
        team = str(model.body.get("ownerTeam", ""))
        resources: dict[str, Any] = {}
        if new.gpu is not None:
            resources["gpu"] = new.gpu
        if new.gpu_type:
            resources["gpuType"] = new.gpu_type
        body = {"environment": key.environment, "ownerTeam": team, **fields,
                **({"resources": resources} if resources else {})}
        spec = _document(Kind.SERVING_ENDPOINT, key.name, {"team": team, "app": key.name},
                         body)
        file = f"endpoints/{key.environment}/{key.name}.yaml"
        text = _text(spec, f"ServingEndpoint ({key.environment}): {model.name}, deployed "
                           f"through the API by {caller.user}.")
        return self._create(caller, _entry(key, file, spec), text, "deploy",
                            f"Deploy model {model.name} on endpoint "
                            f"{key.environment}/{key.name}",
                            f"deploy {model.name} on {new.route}", ENDPOINT_FIELDS)

    def _serving_endpoint(self, new: NewExperiment, template_a: str) -> catalog.CatalogEntry:
        """The endpoint named, or the one endpoint that serves template A."""
        if new.endpoint_id is not None:
            return find(self.store, Kind.SERVING_ENDPOINT, new.endpoint_id,
                        environment=new.environment)
        found = [e for e in catalog.list_entries(self.store, kind=Kind.SERVING_ENDPOINT,
                                                 environment=new.environment)
                 if e.body.get("promptTemplateRef") == template_a]
        if len(found) != 1:
            where = f" in {new.environment}" if new.environment else ""
            raise NoSingleEndpoint(
                f"{len(found)} endpoints{where} serve template {template_a}; name the one "
                "to experiment on with endpointId (and environment)",
                details={"field": "endpointId",
                         "candidates": [{"id": e.id, "environment": e.environment}
                                        for e in found]})
        return found[0]

    def _variants(self, new: NewExperiment) -> list[tuple[str, int]]:
        """(template name, weight) of each variant: A/B from ``allocation``, or A/B/n."""
        if new.variants:
            total = sum(weight for _, weight in new.variants)
            if total != 100:
                raise ConflictingFields(f"variants: the weights sum to {total}, not 100",
                                        details={"field": "variants"})
            pairs = [(find(self.store, Kind.PROMPT_TEMPLATE, t).name, w)
                     for t, w in new.variants]
        else:
            weight_a, weight_b = _weights(new.allocation)
            pairs = [(find(self.store, Kind.PROMPT_TEMPLATE, new.template_a_id).name,
                      weight_a),
                     (find(self.store, Kind.PROMPT_TEMPLATE, new.template_b_id).name,
                      weight_b)]
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise InvalidRequest("the variants name the same template twice",
                                 details={"field": "variants" if new.variants
                                          else "templateBId"})
        return pairs

    def create_experiment(self, caller: Caller, new: NewExperiment) -> Created:
        """A running A/B (or A/B/n) experiment on the endpoint serving the first template."""
        pairs = self._variants(new)
        names = [name for name, _ in pairs]
        endpoint = self._serving_endpoint(new, names[0])
        env = endpoint.environment
        name = _label(new.name or _SLUG.sub("-", "-vs-".join(names))[:63].strip("-"), "name")
        body: dict[str, Any] = {
            "environment": env, "endpointRef": endpoint.name,
            "variants": [{"templateRef": t, "weight": w} for t, w in pairs],
            "metric": new.metric, "state": schema.ExperimentState.RUNNING.value}
        if new.stickiness_header:
            body["stickiness"] = {"header": new.stickiness_header}
        labels = {"team": str(endpoint.body.get("ownerTeam") or "")} \
            if endpoint.body.get("ownerTeam") else {}
        spec = _document(Kind.PROMPT_EXPERIMENT, name, labels, body)
        key = SpecKey(Kind.PROMPT_EXPERIMENT, env, name)
        self._absent(key)
        split = " vs ".join(f"{t} {w}%" for t, w in pairs)
        text = _text(spec, f"PromptExperiment ({env}): {' against '.join(names)} on "
                           f"{endpoint.name}, started through the API by {caller.user}.")
        return self._create(caller, _entry(key, f"experiments/{name}.yaml", spec), text,
                            "experiment", f"Start experiment {env}/{name}: "
                                          f"{' vs '.join(names)}"[:200],
                            f"start {split} on {endpoint.name}", EXPERIMENT_FIELDS)

    def submit_training_job(self, caller: Caller, new: NewTrainingJob) -> Created:
        """A TrainingJob spec; the reconciler runs it as a batch/v1 Job."""
        name = _label(new.name, "name")
        env = _label(new.environment, "environment")
        base = find(self.store, Kind.MODEL, new.base_model_id)
        dataset = find(self.store, Kind.DATASET, new.dataset_id)
        team = new.owner_team or str(base.body.get("ownerTeam", ""))
        body: dict[str, Any] = {
            "environment": env, "ownerTeam": _label(team, "ownerTeam"),
            "baseModelRef": {"name": base.base_name, "version": str(base.body.get("version"))},
            "datasetRef": dataset.name, "image": new.image}
        if new.command:
            body["command"] = list(new.command)
        if new.hyperparameters:
            body["hyperparameters"] = dict(new.hyperparameters)
        if new.gpu or new.gpu_type:
            body["resources"] = {"gpu": new.gpu, **({"gpuType": new.gpu_type}
                                                   if new.gpu_type else {})}
        body["outputModel"] = _ref(new.output_model, "outputModel")
        if new.experiment_url:
            body["experimentUrl"] = new.experiment_url
        spec = _document(Kind.TRAINING_JOB, name, {"team": team}, body)
        key = SpecKey(Kind.TRAINING_JOB, env, name)
        self._absent(key)
        text = _text(spec, f"TrainingJob ({env}): {base.name} on {dataset.name} -> "
                           f"{new.output_model}, submitted through the API by {caller.user}.")
        return self._create(caller, _entry(key, f"training/{name}.yaml", spec), text,
                            "train", f"Submit training job {env}/{name}",
                            f"submit {name}: {base.name} on {dataset.name}", TRAINING_FIELDS)
