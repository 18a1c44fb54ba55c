"""A small typed Python client for the llmops REST API (``/llm-ops/v1``), over httpx.

Role: call the API's routes and hand back the ``data`` of the response
envelope as plain JSON values (camelCase keys, exactly as the API documents
them in ``/llm-ops/v1/openapi.json``); a ``fail`` envelope, or any answer
that is not a success envelope, becomes ``LlmopsApiError(status, message,
data)``. Lists that the API pages (the audit log) are iterated page by page
through their cursor. Input: the server's base URL (``http://host:8080``,
with or without the ``/llm-ops/v1`` prefix) and a bearer token or extra
headers. Output: dicts and lists. Callers: scripts, notebooks, CI jobs
(``examples/status.py``) and the tests. It depends on httpx alone and imports
nothing else of llmops, so it can be vendored into any environment::

    with LlmopsClient("http://localhost:8080", token=os.environ["LLMOPS_API_TOKEN"]) as api:
        for env in api.status():
            print(env["environment"], env["lastAppliedRevision"])
        api.wait_until_healthy("support-chat", environment="prod", timeout=300)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx

API_PREFIX = "/llm-ops/v1"
HEALTHY = "Healthy"
NOT_OBSERVED = "NotObserved"
"""The health an actuator that cannot see the cluster records (hydrate, hydrate-branch, none)."""
DEFAULT_TIMEOUT = 10.0
LIST_PAGE = 500
"""Items per request when a list method follows the pages of a list route."""
MAX_AUDIT_PAGE = 1000

JsonObject = dict[str, Any]
Params = Mapping[str, str | int | float | bool | None]


class LlmopsApiError(Exception):
    """A request the API refused or could not serve, from its ``fail`` envelope.

    ``status`` is the HTTP status code (0 when no answer arrived), ``message``
    the envelope's message and ``data`` its data (field errors, candidates of
    an ambiguous name, an ``errorId`` to quote, ...).
    """

    def __init__(self, status: int, message: str, data: Any = None, *,
                 method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.data = data
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{status} {message}" if status else f"{where}{message}")


class HealthNotObservedError(Exception):
    """Waiting for health is pointless: the endpoint's health is ``NotObserved``.

    Its environment's actuator (``hydrate``, the embedded default of ``llmops
    up``, ``hydrate-branch`` or ``none``) publishes manifests for Argo CD or Flux
    to apply and cannot observe a cluster, so the health will never turn
    ``Healthy`` in llmops. ``endpoint`` is the endpoint as last read.
    """

    def __init__(self, endpoint_id: str, endpoint: JsonObject) -> None:
        self.endpoint_id = endpoint_id
        self.endpoint = endpoint
        where = f" in {endpoint['environment']}" if endpoint.get("environment") else ""
        super().__init__(
            f"endpoint {endpoint_id}{where}: health is {NOT_OBSERVED}: its environment's "
            "actuator (e.g. hydrate, the default of `llmops up`) publishes manifests for "
            "Argo CD or Flux to apply and cannot observe a cluster, so llmops will never "
            f"see it {HEALTHY}; check the cluster (or Argo CD) instead, or use the "
            "kubernetes actuator")


class LlmopsClient:
    """Read the reconciler's state and wake it; one ``httpx.Client`` underneath.

    ``token`` is sent as ``Authorization: Bearer``; ``headers`` are added to
    every request (for a deployment behind an authenticating proxy).
    ``transport`` replaces the network (tests, custom TLS). Close it, or use
    it as a context manager.
    """

    def __init__(self, base_url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        root = base_url.rstrip("/")
        if root.endswith(API_PREFIX):
            root = root[: -len(API_PREFIX)]
        sent = {"Accept": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=f"{root}{API_PREFIX}", headers=sent,
                                  timeout=timeout, transport=transport)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LlmopsClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _request(self, method: Literal["GET", "POST"], path: str, *,
                 params: Params | None = None, json: Any = None,
                 files: list[tuple[str, tuple[str, Any, str]]] | None = None,
                 timeout: float | None = None) -> Any:
        """The ``data`` of a success envelope; ``LlmopsApiError`` for anything else."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, params=query, json=json, files=files,
                timeout=timeout if timeout is not None else self._http.timeout)
        except httpx.TransportError as err:
            raise LlmopsApiError(0, f"no answer from {self._http.base_url}: {err}",
                                 method=method, path=path) from err
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise LlmopsApiError(response.status_code,
                                 f"not an llmops envelope: {response.text[:200]!r}",
                                 method=method, path=path)
        if response.is_error or body.get("status") != "success":
            raise LlmopsApiError(response.status_code, str(body.get("message", "")),
                                 body.get("data"), method=method, path=path)
        return body.get("data")

    def _get(self, path: str, params: Params | None = None) -> Any:
        return self._request("GET", path, params=params)

    @staticmethod
    def _segment(ident: str | int) -> str:
        """A path segment, escaped (``/`` and ``..`` cannot move to another route)."""
        text = str(ident)
        if not text or text in {".", ".."}:
            raise ValueError(f"not a resource id: {text!r}")
        return urllib.parse.quote(text, safe="@")

    # ------------------------------------------------------------------ reconcile

    def status(self, environment: str | None = None) -> list[JsonObject]:
        """Every environment's revisions, conditions, source state and last finished run."""
        data = self._get("/reconcile/status", {"environment": environment})
        return list(data["environments"])

    def runs(self, *, environment: str | None = None, result: str | None = None,
             before_id: int | None = None, limit: int = 50) -> JsonObject:
        """One page of runs, newest first: ``{"items": [...], "nextCursor": id | None}``.

        Pass ``nextCursor`` back as ``before_id`` for the next page, or use ``iter_runs``.
        """
        data: JsonObject = self._get("/reconcile/runs", {
            "environment": environment, "result": result, "before_id": before_id,
            "limit": limit})
        return data

    def iter_runs(self, *, environment: str | None = None, result: str | None = None,
                  page_size: int = 200) -> Iterator[JsonObject]:
        """Every run matching the filters, newest first, following the cursor."""
        cursor: int | None = None
        while True:
            page = self.runs(environment=environment, result=result, before_id=cursor,
                             limit=page_size)
            yield from page["items"]
            cursor = page.get("nextCursor")
            if cursor is None:
                return

    def run(self, run_id: int) -> JsonObject:
        """One run with its recorded plan and per-object results."""
        data: JsonObject = self._get(f"/reconcile/runs/{self._segment(run_id)}")
        return data

    def trigger(self) -> JsonObject:
        """Wake the reconciler (asynchronous: returns ``{"triggered": true}`` at once)."""
        data: JsonObject = self._request("POST", "/reconcile/trigger", json={})
        return data

    def _all(self, path: str, params: dict[str, Any]) -> list[JsonObject]:
        """Every item of a paged list route, following ``nextOffset`` page by page."""
        items: list[JsonObject] = []
        offset: int | None = 0
        while offset is not None:
            page = self._get(path, {**params, "offset": offset, "limit": LIST_PAGE})
            items += page["items"]
            offset = page.get("nextOffset")
        return items

    # ------------------------------------------------------------------ catalog

    def models(self, *, type: str | None = None, owner_team: str | None = None,
               stage: str | None = None, data_classification: str | None = None,
               name: str | None = None) -> list[JsonObject]:
        """Model versions matching every filter given (``name`` is a prefix)."""
        return self._all("/catalog/models", {
            "type": type, "ownerTeam": owner_team, "stage": stage,
            "dataClassification": data_classification, "name": name})

    def model(self, model_id: str) -> JsonObject:
        """By UUID or ``name@version``: that version; by name: ``{"name", "versions": [...]}``."""
        data: JsonObject = self._get(f"/catalog/models/{self._segment(model_id)}")
        return data

    def prompts(self, *, name: str | None = None, model: str | None = None
                ) -> list[JsonObject]:
        """Prompt templates (``model``: only templates for this model name)."""
        return self._all("/catalog/prompts", {"name": name, "model": model})

    def datasets(self, *, owner_team: str | None = None, data_classification: str | None = None,
                 name: str | None = None) -> list[JsonObject]:
        return self._all("/catalog/datasets", {
            "ownerTeam": owner_team, "dataClassification": data_classification, "name": name})

    # ------------------------------------------------------------------ serving, prompts, training

    def endpoints(self, *, environment: str | None = None, model_id: str | None = None,
                  status: str | None = None) -> list[JsonObject]:
        """Serving endpoints (``model_id``: UUID, ``name@version`` or name; ``status``: health)."""
        return self._all("/serving/endpoints", {
            "environment": environment, "modelId": model_id, "status": status})

    def endpoint(self, endpoint_id: str, *, environment: str | None = None) -> JsonObject:
        """One endpoint with scaling, model, experiment and owned objects.

        A name used in several environments is a 409 unless ``environment`` narrows it.
        """
        data: JsonObject = self._get(f"/serving/endpoints/{self._segment(endpoint_id)}",
                                     {"environment": environment})
        return data

    def experiments(self, *, environment: str | None = None, endpoint: str | None = None,
                    state: str | None = None) -> list[JsonObject]:
        return self._all("/prompts/experiments", {
            "environment": environment, "endpoint": endpoint, "state": state})

    def experiment(self, experiment_id: str, *, environment: str | None = None) -> JsonObject:
        data: JsonObject = self._get(f"/prompts/experiments/{self._segment(experiment_id)}",
                                     {"environment": environment})
        return data

    def training_jobs(self, *, environment: str | None = None, owner_team: str | None = None,
                      base_model: str | None = None) -> list[JsonObject]:
        return self._all("/training/jobs", {
            "environment": environment, "ownerTeam": owner_team, "baseModel": base_model})

    def training_job(self, job_id: str, *, environment: str | None = None) -> JsonObject:
        data: JsonObject = self._get(f"/training/jobs/{self._segment(job_id)}",
                                     {"environment": environment})
        return data

    # ------------------------------------------------------------------ governance, costs

    def policies(self, *, name: str | None = None) -> list[JsonObject]:
        return self._all("/governance/policies", {"name": name})

    def audit_logs(self, *, actor: str | None = None, action: str | None = None,
                   result: str | None = None, environment: str | None = None,
                   since: str | None = None, until: str | None = None,
                   page_size: int = 100) -> Iterator[JsonObject]:
        """Every matching audit entry, newest first, fetched page by page as iterated.

        ``since`` / ``until`` are ISO 8601 times (without an offset: UTC).
        """
        if not 1 <= page_size <= MAX_AUDIT_PAGE:
            raise ValueError(f"page_size must be between 1 and {MAX_AUDIT_PAGE}")
        cursor: int | None = None
        while True:
            page = self._get("/governance/audit/logs", {
                "actor": actor, "action": action, "result": result,
                "environment": environment, "since": since, "until": until,
                "after_id": cursor, "limit": page_size})
            yield from page["entries"]
            cursor = page.get("nextCursor")
            if cursor is None:
                return

    def costs(self, window: str = "24h", *, until: str | None = None) -> JsonObject:
        """GPU hours per team, environment and endpoint over ``window`` (``24h``, ``7d``)."""
        data: JsonObject = self._get("/costs", {"window": window, "until": until})
        return data

    # ------------------------------------------------------------------ writes (commits)

    def _post(self, path: str, body: JsonObject | None = None,
              params: Params | None = None) -> JsonObject:
        data: JsonObject = self._request("POST", path, json=body or {}, params=params)
        return data

    def create_model(self, name: str, version: str, type: str, owner_team: str,
                     metadata: Mapping[str, Any] | None = None) -> JsonObject:
        """Register a draft model version: ``{id, commit, branch, direct, file, spec, ...}``."""
        return self._post("/catalog/models", {"name": name, "version": version, "type": type,
                                              "owner_team": owner_team,
                                              "metadata": dict(metadata or {})})

    def upload_model_files(self, model_id: str, files: Mapping[str, bytes | Path],
                           *, timeout: float = 3600.0) -> JsonObject:
        """Upload files (name -> bytes or a path, streamed) in one multipart call."""
        opened = [(name, content if isinstance(content, bytes) else content.open("rb"))
                  for name, content in files.items()]
        try:
            data: JsonObject = self._request(
                "POST", f"/catalog/models/{self._segment(model_id)}/upload",
                files=[("files", (name, body, "application/octet-stream"))
                       for name, body in opened], timeout=timeout)
        finally:
            for _, body in opened:
                if not isinstance(body, bytes):
                    body.close()
        return data

    def promote_model(self, model_id: str, stage: str) -> JsonObject:
        return self._post(f"/catalog/models/{self._segment(model_id)}/promote",
                          {"stage": stage})

    def deploy_endpoint(self, model_id: str, environment: str, route: str, *,
                        min_replicas: int = 1, max_replicas: int = 1,
                        autoscale_policy: Mapping[str, Any] | None = None,
                        name: str | None = None, gpu: int | None = None) -> JsonObject:
        """A ServingEndpoint for the model (an existing one of that name is redeployed)."""
        body: JsonObject = {"modelId": model_id, "environment": environment, "route": route,
                            "minReplicas": min_replicas, "maxReplicas": max_replicas}
        for key, value in (("autoscalePolicy", autoscale_policy), ("name", name),
                           ("gpu", gpu)):
            if value is not None:
                body[key] = dict(value) if isinstance(value, Mapping) else value
        return self._post("/serving/endpoints", body)

    def rollback_endpoint(self, endpoint_id: str, *,
                          environment: str | None = None) -> JsonObject:
        return self._post(f"/serving/endpoints/{self._segment(endpoint_id)}/rollback",
                          params={"environment": environment})

    def create_experiment(self, template_a_id: str, template_b_id: str, allocation: float,
                          metric: str = "latency_ms", **extra: Any) -> JsonObject:
        """An A/B experiment; ``allocation``: B's share (percent or fraction)."""
        return self._post("/prompts/experiments", {
            "templateAId": template_a_id, "templateBId": template_b_id,
            "allocation": allocation, "metric": metric, **extra})

    def conclude_experiment(self, experiment_id: str, winner_template_id: str,
                            notes: str | None = None, *,
                            environment: str | None = None) -> JsonObject:
        return self._post(f"/prompts/experiments/{self._segment(experiment_id)}/conclude",
                          {"winnerTemplateId": winner_template_id, "notes": notes},
                          params={"environment": environment})

    def submit_training_job(self, **job: Any) -> JsonObject:
        """A TrainingJob (fields as ``POST /training/jobs`` documents them)."""
        return self._post("/training/jobs", job)

    def serve_health(self, name: str, *, environment: str | None = None) -> JsonObject:
        """An endpoint's recorded health and its model server's readiness."""
        data: JsonObject = self._get(f"/serve/{self._segment(name)}/health",
                                     {"environment": environment})
        return data

    # ------------------------------------------------------------------ probes and waiting

    def healthz(self) -> bool:
        return bool(self._get("/healthz").get("alive"))

    def readyz(self) -> bool:
        return bool(self._get("/readyz").get("ready"))

    def wait_until_healthy(self, endpoint_id: str, timeout: float = 300.0,
                           interval: float = 5.0, *, environment: str | None = None
                           ) -> JsonObject:
        """Poll the endpoint until its recorded health is ``Healthy``; return it then.

        A 503 or a lost connection is retried until the deadline (the server
        may be restarting); any other refusal (404, 401, 409, ...) is raised
        at once, and so is ``HealthNotObservedError`` when the health is
        ``NotObserved`` (the actuator cannot see a cluster: it would never turn
        Healthy). ``TimeoutError`` names the last health seen.
        """
        if timeout < 0 or interval <= 0:
            raise ValueError("timeout must not be negative and interval must be positive")
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                endpoint = self.endpoint(endpoint_id, environment=environment)
            except LlmopsApiError as err:
                if err.status not in (0, 502, 503, 504):
                    raise
                last = str(err)
            else:
                health = str(endpoint.get("status", {}).get("health", "Unknown"))
                if health == HEALTHY:
                    return endpoint
                if health == NOT_OBSERVED:
                    raise HealthNotObservedError(endpoint_id, endpoint)
                last = health
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"endpoint {endpoint_id} not {HEALTHY} after {timeout:g}s "
                                   f"(last: {last})")
            time.sleep(min(interval, remaining))


def proxy_headers(user_id: str, user_roles: str | list[str], secret: str,
                  user_teams: str | list[str] | None = None) -> dict[str, str]:
    """The identity headers an authenticating proxy sends, signed with ``secret``.

    ``X-Proxy-Signature`` is the hex HMAC-SHA256 (key: the server's
    ``api.proxy_secret``) of ``"<user>\\n<roles>"``, or ``"<user>\\n<roles>\\n<teams>"``
    when teams are sent; roles and teams are comma-separated.
    """
    roles = user_roles if isinstance(user_roles, str) else ",".join(user_roles)
    headers = {"X-User-Id": user_id, "X-User-Roles": roles}
    message = f"{user_id}\n{roles}"
    if user_teams is not None:
        teams = user_teams if isinstance(user_teams, str) else ",".join(user_teams)
        headers["X-User-Teams"] = teams
        message += f"\n{teams}"
    headers["X-Proxy-Signature"] = hmac.new(secret.encode(), message.encode("latin-1"),
                                            hashlib.sha256).hexdigest()
    return headers


class ServingClient(LlmopsClient):
    """The seed's serving client: deploy, wait, check, list, get and roll back endpoints.

    ``user_id`` / ``user_roles`` are sent as the identity headers of a trusted
    proxy, signed with ``proxy_secret`` (default: ``LLMOPS_PROXY_SECRET``, else the
    server's ``LLMOPS_API__PROXY_SECRET``); or
    pass ``token`` for a bearer token instead. Every change is a git commit
    (``commit``, ``branch`` and ``direct`` in the answers), which the
    reconciler then applies; ``wait_for_healthy`` waits for that.
    """

    def __init__(self, base_url: str, user_id: str | None = None,
                 user_roles: str | list[str] | None = None, *, user_teams: str | list[str]
                 | None = None, proxy_secret: str | None = None, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers: dict[str, str] = {}
        # The seed's variable, else the server's own (README exports that one for `up`).
        secret = proxy_secret if proxy_secret is not None else (
            os.environ.get("LLMOPS_PROXY_SECRET") or os.environ.get("LLMOPS_API__PROXY_SECRET", ""))
        if user_id is not None:
            if not secret:
                raise ValueError("user_id needs the proxy secret (proxy_secret=, "
                                 "LLMOPS_PROXY_SECRET or LLMOPS_API__PROXY_SECRET) to sign "
                                 "the identity headers")
            headers = proxy_headers(user_id, user_roles or "", secret, user_teams)
        super().__init__(base_url, token=token, headers=headers, timeout=timeout,
                         transport=transport)

    def __enter__(self) -> ServingClient:
        return self

    def list_endpoints(self, environment: str | None = None, status: str | None = None,
                       model_id: str | None = None) -> list[JsonObject]:
        """Endpoints by environment, health (any case: ``healthy``) and model."""
        return self.endpoints(environment=environment, status=status, model_id=model_id)

    def get_endpoint(self, endpoint_id: str, environment: str | None = None) -> JsonObject:
        """Route, health, scaling and the model's metadata of one endpoint."""
        return self.endpoint(endpoint_id, environment=environment)

    def check_health(self, name: str, environment: str | None = None) -> JsonObject:
        """``GET /serve/{name}/health``: recorded health and the model server's readiness."""
        return self.serve_health(name, environment=environment)

    def wait_for_healthy(self, endpoint_id: str, max_wait_seconds: float = 600.0,
                         poll_interval: float = 5.0, *,
                         environment: str | None = None) -> JsonObject:
        """Poll until the endpoint is Healthy; ``TimeoutError`` naming the last state.

        A deploy committed a moment ago is not known until the reconciler has
        read its commit (a 404 until then), so 404s are waited out too. Once it
        is known with health ``NotObserved`` (the hydrate actuator of ``llmops
        up``: no cluster to observe), ``HealthNotObservedError`` is raised at once
        instead of polling to the timeout.
        """
        deadline = time.monotonic() + max_wait_seconds
        last = "not reconciled yet"
        while True:
            try:
                return self.wait_until_healthy(endpoint_id, timeout=max(
                    0.0, deadline - time.monotonic()), interval=poll_interval,
                    environment=environment)
            except LlmopsApiError as err:
                if err.status != 404:
                    raise
                last = "not reconciled yet (404)"
            except TimeoutError as err:
                raise TimeoutError(str(err)) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"endpoint {endpoint_id} not {HEALTHY} after "
                                   f"{max_wait_seconds:g}s (last: {last})")
            time.sleep(min(poll_interval, remaining))
