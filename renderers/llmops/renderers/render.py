"""The render stage: a validated ``SpecSet`` -> the Kubernetes objects of one environment.

Input: a ``SpecSet`` (from ``llmops.engine.spec.validate``), an environment name
declared in ``llmops.yaml`` and the source commit to stamp. Output: a tuple of
plain-dict objects (``KubeObject``) in the Argo CD hydrator order (namespace,
name, group, kind; cluster-scoped objects first). Called by the CLI
(``llmops render``, ``llmops plan``) and the reconciler; the hydrate and
kubernetes actuators consume the same output.

What renders (see ``serving`` and ``training`` for each object's shape):

- ``ServingEndpoint`` of the environment: Deployment, Service,
  HorizontalPodAutoscaler (not for ``replicas.min: 0``), Ingress and, with a
  ``promptTemplateRef``, a prompt ConfigMap;
- ``PromptExperiment`` of the environment: the variant-table ConfigMap;
- ``TrainingJob`` of the environment: a Job;
- ``Policy`` ``gpuBudgets`` for the environment: a ResourceQuota per namespace;
- a ``Namespace`` for every namespace the objects above use, owned by the
  environment itself (``llmops.io/kind: Environment``) and marked
  prune-protected: deleting a namespace deletes everything in it, including
  what llmops does not manage.

Global kinds (Model, PromptTemplate, Dataset) render nothing by themselves.
The output is deterministic: the same spec set, environment and commit give
equal objects (byte-identical once serialised). Every failure is a
``RenderError`` naming the spec file, the spec and the template; an
environment that is not declared is one too.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from llmops.engine import manifest
from llmops.engine.spec import repoconfig, schema
from llmops.engine.spec.validate import SourcedSpec, SpecSet
from llmops.engine.types import Kind, KubeObject, ResourceKey, content_hash
from llmops.renderers import objects, serving, templating, training
from llmops.renderers.objects import Owner, Scope
from llmops.renderers.templating import RenderError

__all__ = ["RenderCache", "RenderError", "render_environment", "sort_key"]

CONFIG_FILE = "llmops.yaml"
ENVIRONMENT_KIND = "Environment"
PRUNE_PROTECTED_ANNOTATIONS = {
    manifest.PRUNE_PROTECTED_LABEL: "true",
    # Argo CD keeps the namespace when it leaves git (Prune) and when the Application
    # is deleted (Delete): a team namespace holds more than llmops manages.
    "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
}

Renderer = Callable[[Scope, SourcedSpec], list[KubeObject]]

_RENDERERS: dict[str, Renderer] = {
    Kind.SERVING_ENDPOINT: serving.render_endpoint,
    Kind.PROMPT_EXPERIMENT: serving.render_experiment,
    Kind.TRAINING_JOB: training.render_training_job,
}


def sort_key(obj: KubeObject) -> tuple[str, str, str, str]:
    """The Argo CD source hydrator's order: namespace, name, group, kind."""
    key = ResourceKey.of(obj)
    return (key.namespace, key.name, key.group, key.kind)


def _owner(obj: KubeObject) -> str:
    kind, name = manifest.owner_of(obj)
    return f"{kind or '?'}/{name or '?'}"


def _namespaces(scope: Scope, rendered: list[KubeObject]) -> list[KubeObject]:
    teams: dict[str, set[str]] = {}
    for obj in rendered:
        namespace = obj["metadata"].get("namespace")
        if namespace:
            teams.setdefault(namespace, set()).add(
                manifest.labels_of(obj).get(manifest.PART_OF_LABEL, ""))
    env_hash = content_hash(scope.config.model_dump(mode="json"))
    out: list[KubeObject] = []
    template = "namespace.json.j2"
    for namespace, owners in sorted(teams.items()):
        team = next(iter(owners)) if len(owners) == 1 else ""
        owner = Owner(kind=ENVIRONMENT_KIND, name=scope.environment,
                      environment=scope.environment, file=CONFIG_FILE, spec_hash=env_hash,
                      team=team)
        obj = templating.render_object(
            template, {"name": namespace, "annotations": PRUNE_PROTECTED_ANNOTATIONS},
            file=owner.file, subject=owner.subject)
        out.append(objects.stamp(obj, owner, app=namespace, component="namespace",
                                 namespace="", revision=scope.revision,
                                 template=template, instance=namespace))
    return out


def _check_unique(rendered: list[KubeObject], files: dict[int, str]) -> None:
    seen: dict[ResourceKey, KubeObject] = {}
    for obj in rendered:
        key = ResourceKey.of(obj)
        first = seen.setdefault(key, obj)
        if first is not obj:
            raise RenderError(f"{key} is rendered twice, for {_owner(first)} "
                              f"({files.get(id(first), '?')}) and for {_owner(obj)}; "
                              "rename one of them", file=files.get(id(obj), ""),
                              subject=_owner(obj))


def _dependencies(spec_set: SpecSet, spec: schema.SpecBase) -> Iterable[schema.SpecBase | None]:
    """Every other spec a spec's objects are rendered from (what the renderers read)."""
    variants: list[schema.Variant] = []
    if isinstance(spec, schema.ServingEndpointSpec):
        experiment = spec_set.experiment_for(spec)
        model = spec_set.model(spec.spec.modelRef)
        yield model
        # An adapter is served with its base model: the base's files are fetched too.
        yield spec_set.model(model.spec.baseModel) if model and model.spec.baseModel else None
        yield spec_set.template(spec.spec.promptTemplateRef or "")
        yield experiment
        variants = experiment.spec.variants if experiment else []
    elif isinstance(spec, schema.PromptExperimentSpec):
        endpoint = spec_set.endpoint(spec.spec.environment, spec.spec.endpointRef)
        yield endpoint
        yield spec_set.model(endpoint.spec.modelRef) if endpoint else None
        variants = spec.spec.variants
    elif isinstance(spec, schema.TrainingJobSpec):
        yield spec_set.model(spec.spec.baseModelRef)
        yield spec_set.dataset(spec.spec.datasetRef)
    for variant in variants:
        yield spec_set.template(variant.templateRef)


@dataclass
class RenderCache:
    """Rendered objects per spec, keyed by the content of the spec, of every spec it is
    rendered from and of its environment's config: an unchanged spec is not rendered
    again. Cached objects keep the source commit they were first rendered at (the
    commit that last changed them). Shared by the reconciler's passes; thread-safe."""

    max_entries: int = 50_000
    hits: int = 0
    misses: int = 0
    _entries: dict[tuple[str, ...], tuple[KubeObject, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def render(self, key: tuple[str, ...], build: Callable[[], list[KubeObject]]
               ) -> tuple[KubeObject, ...]:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
        built = tuple(build())
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = built
        return built


def render_environment(spec_set: SpecSet, environment: str, *, revision: str = "",
                       cache: RenderCache | None = None) -> tuple[KubeObject, ...]:
    """Every Kubernetes object of ``environment``, stamped and sorted.

    With a ``cache``, specs whose inputs did not change reuse their objects.
    Raises ``RenderError`` for an undeclared environment or a spec that does
    not render.
    """
    config: repoconfig.Environment | None = spec_set.config.environments.get(environment)
    if config is None:
        declared = ", ".join(spec_set.config.environments) or "none"
        raise RenderError(f"unknown environment {environment!r} (declared: {declared})",
                          file=CONFIG_FILE)
    scope = Scope(spec_set=spec_set, environment=environment, config=config,
                  revision=revision)
    rendered: list[KubeObject] = []
    files: dict[int, str] = {}
    config_hash = content_hash(config.model_dump(mode="json"))
    for item in spec_set.items:
        renderer = _RENDERERS.get(item.spec.kind)
        if renderer is None or item.spec.environment != environment:
            continue
        if cache is None:
            built: Iterable[KubeObject] = renderer(scope, item)
        else:
            # An endpoint's rollout also depends on its team's GPU headroom (surge_fits),
            # which other endpoints' specs change.
            surge = (str(serving.surge_fits(scope, item.spec))
                     if isinstance(item.spec, schema.ServingEndpointSpec) else "")
            key = (environment, config_hash, item.document.file, spec_set.hash_of(item.spec),
                   surge, *(spec_set.hash_of(d) if d else ""
                            for d in _dependencies(spec_set, item.spec)))
            built = cache.render(key, functools.partial(renderer, scope, item))
        for obj in built:
            files[id(obj)] = item.document.file
            rendered.append(obj)
    rendered.extend(training.render_gpu_quotas(scope))
    rendered.extend(_namespaces(scope, rendered))
    _check_unique(rendered, files)
    rendered.sort(key=sort_key)
    return tuple(rendered)
