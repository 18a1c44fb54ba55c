"""The validate stage: loaded documents -> a typed, cross-checked ``SpecSet``.

Input: ``loader.Loaded``. Output: ``SpecSet`` (the repo config and every spec,
each with the document it came from), or ``SpecError`` carrying every issue
of the revision at once: load problems, field errors (located at the field's
line and column) and broken references (reported on the referring spec).
Called by the CLI (`validate`, `render`, `plan`) and the reconciler. A document
object (the parse cache hands out one per path and content) is type-checked once
per process, so two revisions share the spec objects of their unchanged files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from llmops.engine.errors import SpecError, SpecIssue
from llmops.engine.spec import loader, placement, repoconfig, schema
from llmops.engine.types import (
    API_VERSION,
    Document,
    FieldPath,
    Kind,
    SpecKey,
    content_hash,
    format_path,
)

S = TypeVar("S", bound=schema.SpecBase)

MAX_LABEL_LENGTH = 63
"""Names that are DNS-1123 labels (namespaces, Services) take at most 63 characters."""

_PATTERN_NAMES = {
    schema.DNS_LABEL_RE: "a DNS-1123 label (lowercase letters, digits and '-', at most 63)",
    schema.SEMVER_RE: "a semantic version such as 1.2.0",
    schema.S3_URI_RE: "an s3://bucket/prefix/ URI ending in '/'",
    schema.QUANTITY_RE: "a Kubernetes quantity such as 500m, 4 or 16Gi",
    schema.ROUTE_RE: "an absolute URL path such as /v1/chat",
    schema.IMAGE_RE: "a container image reference",
    schema.METRIC_NAME_RE: "a metric name",
    schema.HEADER_RE: "an HTTP header or cookie name",
    schema.MODEL_FILE_RE: "a plain file name (no '/' or '..')",
    schema.HOST_RE: ("an RFC 1123 host name (dot-separated labels of lowercase letters, "
                     "digits and '-', each 1-63, none empty; '*.' may lead)"),
    schema.LABEL_VALUE_RE: ("a Kubernetes label value (at most 63 of letters, digits, '-', "
                            "'_' and '.', starting and ending with a letter or digit)"),
    schema.LABEL_KEY_RE: ("a Kubernetes label key (an optional DNS prefix and '/', then a "
                          "name of at most 63)"),
}


@dataclass(frozen=True, slots=True)
class SourcedSpec:
    """A validated spec and the document it was read from."""

    spec: schema.AnySpec
    document: Document

    @property
    def key(self) -> SpecKey:
        return self.spec.key

    @property
    def where(self) -> str:
        return f"{self.document.file}:{self.document.line}"


@dataclass(frozen=True)
class SpecSet:
    """Every spec of one revision, valid and cross-checked; sorted by key."""

    root: str
    config: repoconfig.RepoConfig
    items: tuple[SourcedSpec, ...]
    _by_key: dict[SpecKey, SourcedSpec] = field(default_factory=dict, compare=False, repr=False)
    _experiments: dict[tuple[str, str], schema.PromptExperimentSpec] = field(
        default_factory=dict, compare=False, repr=False)
    _gpus: dict[str, tuple[dict[str, int], dict[str, int]]] = field(
        default_factory=dict, compare=False, repr=False)
    _hashes: dict[int, tuple[schema.SpecBase, str]] = field(
        default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key.update({item.key: item for item in self.items})
        # One pass over the experiments: per (environment, endpoint) the one routing its
        # traffic, a running one first, then by name (experiment_for is called per endpoint).
        ranked = sorted(self.of(schema.PromptExperimentSpec),
                        key=lambda e: (e.spec.state != schema.ExperimentState.RUNNING, e.name),
                        reverse=True)
        self._experiments.update({(e.spec.environment, e.spec.endpointRef): e for e in ranked})

    def get(self, key: SpecKey) -> SourcedSpec | None:
        return self._by_key.get(key)

    def of(self, cls: type[S]) -> Iterator[S]:
        for item in self.items:
            if isinstance(item.spec, cls):
                yield item.spec

    def sourced(self, kind: str) -> Iterator[SourcedSpec]:
        return (item for item in self.items if item.spec.kind == kind)

    def model(self, ref: schema.ModelRef) -> schema.ModelSpec | None:
        found = self._by_key.get(SpecKey(Kind.MODEL, "", f"{ref.name}@{ref.version}"))
        return cast(schema.ModelSpec, found.spec) if found else None

    def template(self, name: str) -> schema.PromptTemplateSpec | None:
        found = self._by_key.get(SpecKey(Kind.PROMPT_TEMPLATE, "", name))
        return cast(schema.PromptTemplateSpec, found.spec) if found else None

    def dataset(self, name: str) -> schema.DatasetSpec | None:
        found = self._by_key.get(SpecKey(Kind.DATASET, "", name))
        return cast(schema.DatasetSpec, found.spec) if found else None

    def endpoint(self, env: str, name: str) -> schema.ServingEndpointSpec | None:
        found = self._by_key.get(SpecKey(Kind.SERVING_ENDPOINT, env, name))
        return cast(schema.ServingEndpointSpec, found.spec) if found else None

    def team_of(self, spec: schema.ServingEndpointSpec | schema.TrainingJobSpec) -> str:
        """The owning team: the spec's ownerTeam, else its model's."""
        if spec.spec.ownerTeam:
            return spec.spec.ownerTeam
        ref = (spec.spec.modelRef if isinstance(spec, schema.ServingEndpointSpec)
               else spec.spec.baseModelRef)
        model = self.model(ref)
        return model.spec.ownerTeam if model else "unowned"

    def experiment_for(self, endpoint: schema.ServingEndpointSpec
                       ) -> schema.PromptExperimentSpec | None:
        """The experiment routing this endpoint's traffic (a running one wins)."""
        return self._experiments.get((endpoint.environment, endpoint.name))

    def policies(self) -> list[schema.PolicySpec]:
        return list(self.of(schema.PolicySpec))

    def hash_of(self, spec: schema.SpecBase) -> str:
        """The content hash of ``spec`` (its JSON form), computed once per spec object."""
        found = self._hashes.get(id(spec))
        if found is None or found[0] is not spec:
            found = self._hashes[id(spec)] = (spec, content_hash(spec.model_dump(mode="json")))
        return found[1]

    def serving_gpus(self, env: str) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """Per team in ``env``: the GPUs its endpoints hold at ``replicas.max``, and the
        sum of its ``gpuBudgets`` (a team without one is absent). Computed once per env."""
        found = self._gpus.get(env)
        if found is None:
            used: dict[str, int] = {}
            for e in self.of(schema.ServingEndpointSpec):
                if e.environment == env:
                    team = self.team_of(e)
                    used[team] = used.get(team, 0) + e.spec.resources.gpu * e.spec.replicas.max
            budgets: dict[str, int] = {}
            for policy in self.policies():
                for b in policy.spec.gpuBudgets:
                    if b.environment == env:
                        budgets[b.team] = budgets.get(b.team, 0) + b.gpus
            found = self._gpus[env] = (used, budgets)
        return found

    def in_environment(self, env: str) -> Iterator[SourcedSpec]:
        return (item for item in self.items if item.spec.environment in ("", env))


# --------------------------------------------------------------------------- field errors


def _message(err: Any) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        value = err.get("input")
        shown = f" {str(value)[:80]!r}" if isinstance(value, str) else ""
        return f"value{shown} is not {_PATTERN_NAMES.get(pattern, 'valid')}"
    message = str(err.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def _spec_name(data: Any) -> str:
    if isinstance(data, dict):
        meta = data.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            return str(meta["name"])[:63]
    return ""


def _issues_from(exc: ValidationError, doc: Document, kind: str) -> Iterator[SpecIssue]:
    name = _spec_name(doc.data)
    for err in exc.errors():
        loc: FieldPath = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        line, col = doc.locate(loc)
        yield SpecIssue(file=doc.file, line=line, column=col, kind=kind, name=name,
                        field=format_path(loc), message=_message(err))


def _issue(doc: Document, spec: schema.SpecBase, path: FieldPath, message: str) -> SpecIssue:
    line, col = doc.locate(path)
    return SpecIssue(file=doc.file, line=line, column=col, kind=str(spec.kind),  # type: ignore[attr-defined]
                     name=spec.name, field=format_path(path), message=message)


_PARSED_MAX = 100_000
_parsed: dict[int, tuple[Document, schema.AnySpec | list[SpecIssue]]] = {}
_parsed_lock = threading.Lock()


def _parse_spec(doc: Document) -> schema.AnySpec | list[SpecIssue]:
    """``_parse_one`` of ``doc``, remembered per document: the loader's parse cache hands
    out the very same ``Document`` for a file whose bytes did not change, so a new revision
    type-checks only the files it changed, and two revisions share their unchanged specs
    (a plan tells them equal by identity). Specs are frozen; the entry holds its
    document, so the id cannot be reused while it is kept."""
    hit = _parsed.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    result = _parse_one(doc)
    with _parsed_lock:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.pop(next(iter(_parsed)), None)
        _parsed[id(doc)] = (doc, result)
    return result


def _parse_one(doc: Document) -> schema.AnySpec | list[SpecIssue]:
    data = doc.data
    where = {"file": doc.file, "line": doc.line, "column": doc.column}
    if not isinstance(data, dict):
        return [SpecIssue(**where, message=f"a spec document must be a mapping, "  # type: ignore[arg-type]
                          f"not {type(data).__name__}")]
    api_version, kind = data.get("apiVersion"), data.get("kind")
    name = _spec_name(data)
    if api_version != API_VERSION:
        line, col = doc.locate(("apiVersion",))
        shown = "missing" if api_version is None else f"{str(api_version)[:60]!r}"
        return [SpecIssue(file=doc.file, line=line, column=col, kind=str(kind or ""), name=name,
                          field="apiVersion",
                          message=f"unknown apiVersion {shown} (expected {API_VERSION})")]
    cls = schema.spec_class(kind)
    if cls is None:
        line, col = doc.locate(("kind",))
        shown = "missing" if kind is None else f"{str(kind)[:60]!r}"
        return [SpecIssue(file=doc.file, line=line, column=col, kind="", name=name,
                          field="kind", message=f"unknown kind {shown} (expected one of "
                          f"{', '.join(k.value for k in Kind)})")]
    try:
        return cast(schema.AnySpec, cls.model_validate(data))
    except ValidationError as exc:
        return list(_issues_from(exc, doc, str(kind)))


def parse_config(doc: Document) -> repoconfig.RepoConfig | list[SpecIssue]:
    if not isinstance(doc.data, dict):
        return [SpecIssue(file=doc.file, line=doc.line, column=doc.column,
                          message="the repo config must be a mapping")]
    try:
        return repoconfig.RepoConfig.model_validate(doc.data)
    except ValidationError as exc:
        return list(_issues_from(exc, doc, "Repository"))


# --------------------------------------------------------------------------- cross references


class _References:
    """Broken references, reported on the referring spec; one method per kind.

    A reference to a spec that failed its own validation (``broken`` holds its
    kind and name) is not reported again: that spec's own error says it all.
    Names that must be unique across specs (routes, running experiments per
    endpoint, roles, GPU budgets) are remembered as they are met.
    """

    def __init__(self, by_key: dict[SpecKey, SourcedSpec], config: repoconfig.RepoConfig,
                 broken: set[tuple[str, str]]) -> None:
        self.by_key, self.broken, self.envs = by_key, broken, config.environments
        self.running: dict[tuple[str, str], SourcedSpec] = {}
        self.routes: dict[tuple[str, str, str], SourcedSpec] = {}
        self.roles: dict[str, SourcedSpec] = {}
        self.budgets: dict[tuple[str, str], SourcedSpec] = {}

    def check(self, items: list[SourcedSpec]) -> Iterator[SpecIssue]:
        for item in items:
            s = item.spec
            if s.environment and s.environment not in self.envs:
                yield _issue(item.document, s, ("spec", "environment"),
                             f"environment {s.environment!r} is not declared in llmops.yaml "
                             f"(declared: {', '.join(self.envs)})")
            if isinstance(s, schema.ModelSpec):
                yield from self._model_ref(item, ("spec", "baseModel"), s.spec.baseModel)
            elif isinstance(s, schema.PromptTemplateSpec):
                yield from self._model_ref(item, ("spec", "modelRef"), s.spec.modelRef)
            elif isinstance(s, schema.ServingEndpointSpec):
                yield from self._endpoint(item, s)
                yield from self._namespace(item, s)
            elif isinstance(s, schema.PromptExperimentSpec):
                yield from self._experiment(item, s)
            elif isinstance(s, schema.TrainingJobSpec):
                yield from self._training_job(item, s)
                yield from self._namespace(item, s)
            elif isinstance(s, schema.PolicySpec):
                yield from _policy_references(item, s, self.envs, self.roles, self.budgets)

    def _namespace(self, item: SourcedSpec, s: schema.ServingEndpointSpec
                   | schema.TrainingJobSpec) -> Iterator[SpecIssue]:
        """The namespace the spec lands in must be a name the API server takes (<= 63)."""
        env = self.envs.get(s.environment)
        ref = (s.spec.modelRef if isinstance(s, schema.ServingEndpointSpec)
               else s.spec.baseModelRef)
        model = self.by_key.get(SpecKey(Kind.MODEL, "", f"{ref.name}@{ref.version}"))
        team = s.spec.ownerTeam or (
            model.spec.spec.ownerTeam if model and isinstance(model.spec, schema.ModelSpec)
            else "")
        if env is None or not team:
            return
        namespace = env.namespace_for(team)
        if len(namespace) > MAX_LABEL_LENGTH:
            path: FieldPath = ("spec", "ownerTeam") if s.spec.ownerTeam else ("spec",)
            yield _issue(item.document, s, path, f"namespace {namespace!r} (team {team!r} in "
                         f"environment {s.environment}) is {len(namespace)} characters; "
                         f"Kubernetes takes at most {MAX_LABEL_LENGTH}")

    def _defined(self, kind: Kind, name: str, environment: str = "") -> bool:
        return SpecKey(kind, environment, name) in self.by_key or (kind, name) in self.broken

    def _model_ref(self, item: SourcedSpec, path: FieldPath,
                   ref: schema.ModelRef | None) -> Iterator[SpecIssue]:
        if ref is None or SpecKey(Kind.MODEL, "", f"{ref.name}@{ref.version}") in self.by_key \
                or (Kind.MODEL, ref.name) in self.broken:
            return
        found = sorted(k.name.split("@", 1)[1] for k in self.by_key
                       if k.kind == Kind.MODEL and k.name.split("@", 1)[0] == ref.name)
        known = f" (known versions: {', '.join(found)})" if found else ""
        yield _issue(item.document, item.spec, path,
                     f"model {ref.name} {ref.version} is not defined{known}")

    def _template_ref(self, item: SourcedSpec, path: FieldPath, name: str) -> Iterator[SpecIssue]:
        if not self._defined(Kind.PROMPT_TEMPLATE, name):
            yield _issue(item.document, item.spec, path, f"prompt template {name} is not defined")

    def _model(self, ref: schema.ModelRef) -> schema.ModelSpec | None:
        item = self.by_key.get(SpecKey(Kind.MODEL, "", f"{ref.name}@{ref.version}"))
        return cast(schema.ModelSpec, item.spec) if item is not None else None

    def _placement(self, item: SourcedSpec, problems: Iterator[placement.Problem]
                   ) -> Iterator[SpecIssue]:
        for path, message in problems:
            yield _issue(item.document, item.spec, path, message)

    def _serving(self, env: str) -> repoconfig.Serving:
        config = self.envs.get(env)
        return config.serving_config if config is not None else repoconfig.DEFAULT_SERVING

    def _endpoint(self, item: SourcedSpec, s: schema.ServingEndpointSpec) -> Iterator[SpecIssue]:
        yield from self._model_ref(item, ("spec", "modelRef"), s.spec.modelRef)
        yield from self._placement(item, placement.endpoint_problems(
            s.spec, self._model, self._serving(s.environment)))
        if s.spec.promptTemplateRef:
            yield from self._template_ref(item, ("spec", "promptTemplateRef"),
                                          s.spec.promptTemplateRef)
        route_key = (s.environment, s.spec.host or "", s.spec.route.rstrip("/") or "/")
        other = self.routes.setdefault(route_key, item)
        if other is not item:
            yield _issue(item.document, s, ("spec", "route"), f"route {s.spec.route} is "
                         f"already served by {other.spec.name} ({other.where})")

    def _experiment(self, item: SourcedSpec,
                    s: schema.PromptExperimentSpec) -> Iterator[SpecIssue]:
        doc, endpoint = item.document, s.spec.endpointRef
        if SpecKey(Kind.SERVING_ENDPOINT, s.environment, endpoint) not in self.by_key and (
                Kind.SERVING_ENDPOINT, endpoint) not in self.broken:
            yield _issue(doc, s, ("spec", "endpointRef"), f"endpoint {endpoint} "
                         f"is not defined in environment {s.environment}")
        for i, variant in enumerate(s.spec.variants):
            yield from self._template_ref(item, ("spec", "variants", i, "templateRef"),
                                          variant.templateRef)
        if s.spec.state == schema.ExperimentState.RUNNING:
            other = self.running.setdefault((s.environment, endpoint), item)
            if other is not item:
                yield _issue(doc, s, ("spec", "endpointRef"), "endpoint already has a "
                             f"running experiment: {other.spec.name} ({other.where})")

    def _training_job(self, item: SourcedSpec, s: schema.TrainingJobSpec) -> Iterator[SpecIssue]:
        yield from self._model_ref(item, ("spec", "baseModelRef"), s.spec.baseModelRef)
        yield from self._placement(item, placement.training_problems(
            s.spec, self._model, self._serving(s.environment)))
        if not self._defined(Kind.DATASET, s.spec.datasetRef):
            yield _issue(item.document, s, ("spec", "datasetRef"),
                         f"dataset {s.spec.datasetRef} is not defined")


def _policy_references(item: SourcedSpec, s: schema.PolicySpec, envs: dict[str, Any],
                       roles: dict[str, SourcedSpec],
                       budgets: dict[tuple[str, str], SourcedSpec]) -> Iterator[SpecIssue]:
    doc = item.document

    def env_check(path: FieldPath, env: str) -> Iterator[SpecIssue]:
        if env not in envs:
            yield _issue(doc, s, path, f"environment {env!r} is not declared in llmops.yaml")

    if s.spec.rbac:
        for role in s.spec.rbac.roles:
            if role in roles:
                yield _issue(doc, s, ("spec", "rbac", "roles", role), f"role {role} is "
                             f"already defined by {roles[role].spec.name} ({roles[role].where})")
            else:
                roles[role] = item
    for i, rule in enumerate(s.spec.promotion):
        yield from env_check(("spec", "promotion", i, "environment"), rule.environment)
        if rule.requirePriorEnvironment:
            yield from env_check(("spec", "promotion", i, "requirePriorEnvironment"),
                                 rule.requirePriorEnvironment)
    for cls, allowed in s.spec.dataClassification.items():
        for j, env in enumerate(allowed):
            yield from env_check(("spec", "dataClassification", cls.value, j), env)
    for i, budget in enumerate(s.spec.gpuBudgets):
        yield from env_check(("spec", "gpuBudgets", i, "environment"), budget.environment)
        slot = (budget.team, budget.environment)
        if slot in budgets:
            yield _issue(doc, s, ("spec", "gpuBudgets", i), f"team {budget.team} already has "
                         f"a budget in {budget.environment} ({budgets[slot].where})")
        else:
            budgets[slot] = item
    for i, window in enumerate(s.spec.changeWindows):
        for j, env in enumerate(window.environments):
            yield from env_check(("spec", "changeWindows", i, "environments", j), env)
    for i, protection in enumerate(s.spec.pruneProtection):
        for j, env in enumerate(protection.environments):
            yield from env_check(("spec", "pruneProtection", i, "environments", j), env)


# --------------------------------------------------------------------------- entry points


def validate(loaded: loader.Loaded) -> SpecSet:
    """Type-check and cross-check a loaded repo; raises ``SpecError`` with every issue."""
    issues: list[SpecIssue] = list(loaded.issues)
    config: repoconfig.RepoConfig | None = None
    if loaded.config is not None:
        parsed = parse_config(loaded.config)
        if isinstance(parsed, list):
            issues.extend(parsed)
        else:
            config = parsed
    items: list[SourcedSpec] = []
    by_key: dict[SpecKey, SourcedSpec] = {}
    broken: set[tuple[str, str]] = set()
    for doc in loaded.documents:
        result = _parse_spec(doc)
        if isinstance(result, list):
            issues.extend(result)
            if isinstance(doc.data, dict):
                broken.add((str(doc.data.get("kind")), _spec_name(doc.data)))
            continue
        item = SourcedSpec(spec=result, document=doc)
        if item.key in by_key:
            first = by_key[item.key]
            issues.append(_issue(doc, result, ("metadata", "name"), f"{item.key} is defined "
                                 f"twice: here and in {first.where}"))
            continue
        by_key[item.key] = item
        items.append(item)
    if config is not None:
        issues.extend(_References(by_key, config, broken).check(items))
    if issues:
        raise SpecError(issues)
    assert config is not None
    items.sort(key=lambda i: i.key)
    return SpecSet(root=loaded.root, config=config, items=tuple(items))


def load_and_validate(root: str | os.PathLike[str], limits: loader.Limits = loader.DEFAULT_LIMITS,
                      cache: loader.ParseCache | None = loader.DEFAULT_CACHE) -> SpecSet:
    """Load and validate the repo at ``root`` (the path most callers want)."""
    return validate(loader.load_repo(root, limits, cache))

