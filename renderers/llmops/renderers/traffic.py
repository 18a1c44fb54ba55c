"""How requests reach an endpoint and how its replica count follows them.

Input: an endpoint's name, body and namespace and its environment's
``repoconfig.Serving``. Output: template contexts (plain data) for the
routing objects (ingress-nginx ``Ingress`` or Gateway API ``HTTPRoute``) and
the autoscaler (``HorizontalPodAutoscaler`` or KEDA ``ScaledObject``). Called
by ``llmops.renderers.serving``. Pure functions.

Routes: every endpoint answers under the seed's prefix
``/llm-ops/v1/serve/<endpoint>`` and under ``spec.route`` (when it differs).
``<prefix>/v1/...`` reaches the model server as ``/v1/...`` (its OpenAI paths);
``/llm-ops/v1/serve/<endpoint>/chat`` reaches it as ``/v1/chat/completions``.
Nothing else under the prefix goes to the server: ``<prefix>/health`` stays
with the llmops API. Proxy timeouts are ``requestTimeoutSeconds`` (a long
streamed generation), buffering is off (tokens flow as they come), the body
limit is ``maxBodySize``.

Autoscaling: on the server's queue of waiting requests by default
(``vllm:num_requests_waiting``, TGI ``tgi_queue_size``; exposed to the HPA by
a Prometheus adapter as ``vllm_num_requests_waiting``/``tgi_queue_size``, or
queried by KEDA's prometheus trigger), on CPU only when the spec asks.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from llmops.engine.spec import repoconfig, schema
from llmops.renderers import modelserver

SEED_PREFIX = "/llm-ops/v1/serve"
CHAT_PATH = "/v1/chat/completions"
NGINX = "nginx.ingress.kubernetes.io/"


def prefixes(name: str, route: str) -> list[str]:
    """The public path prefixes of an endpoint: the seed's, then ``spec.route`` if different."""
    seed = f"{SEED_PREFIX}/{name}"
    own = route.rstrip("/")
    return [seed] if own == seed else [seed, own]


def _regex(prefix: str) -> str:
    return prefix.replace(".", r"\.")


def _backend(service: str) -> dict[str, Any]:
    return {"service": {"name": service, "port": {"name": "http"}}}


def nginx_annotations(serving: repoconfig.Serving, rewrite: str) -> dict[str, str]:
    timeout = str(serving.requestTimeoutSeconds)
    return {f"{NGINX}use-regex": "true", f"{NGINX}rewrite-target": rewrite,
            f"{NGINX}proxy-read-timeout": timeout, f"{NGINX}proxy-send-timeout": timeout,
            f"{NGINX}proxy-body-size": serving.maxBodySize,
            f"{NGINX}proxy-buffering": "off"}


def ingresses(name: str, body: schema.ServingEndpointBody, serving: repoconfig.Serving
              ) -> list[tuple[str, dict[str, Any]]]:
    """``(object name, context)`` of the API Ingress and the seed's ``/chat`` Ingress."""
    common = {"host": body.host, "ingress_class": serving.ingressClassName}
    api = [{"path": f"{_regex(p)}/(v1/.*)", "pathType": "ImplementationSpecific",
            "backend": _backend(name)} for p in prefixes(name, body.route)]
    chat = [{"path": f"{_regex(prefixes(name, body.route)[0])}/chat$",
             "pathType": "ImplementationSpecific", "backend": _backend(name)}]
    return [
        (name, {**common, "paths": api, "annotations": nginx_annotations(serving, "/$1")}),
        (f"{name}-chat", {**common, "paths": chat,
                          "annotations": nginx_annotations(serving, CHAT_PATH)}),
    ]


def httproute(name: str, body: schema.ServingEndpointBody, serving: repoconfig.Serving
              ) -> dict[str, Any]:
    """Context of the HTTPRoute: one rule per prefix plus the seed's ``/chat``."""
    gateway = serving.gateway
    assert gateway is not None  # repoconfig.Serving requires it for gateway-api
    parent: dict[str, Any] = {"name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    backend = [{"name": name, "port": 80}]
    timeouts = {"request": f"{serving.requestTimeoutSeconds}s"}

    def rule(match: dict[str, str], rewrite: dict[str, str]) -> dict[str, Any]:
        return {"matches": [{"path": match}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {"path": rewrite}}],
                "backendRefs": backend, "timeouts": timeouts}

    rules = [rule({"type": "PathPrefix", "value": f"{p}/v1"},
                  {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"})
             for p in prefixes(name, body.route)]
    rules.append(rule({"type": "Exact", "value": f"{prefixes(name, body.route)[0]}/chat"},
                      {"type": "ReplaceFullPath", "replaceFullPath": CHAT_PATH}))
    return {"parent_refs": [parent], "hostnames": [body.host] if body.host else [],
            "rules": rules}


# --------------------------------------------------------------------------- autoscaling


_SUFFIX = {"m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6),
           "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15),
           "E": Decimal(10**18), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
           "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50),
           "Ei": Decimal(2**60)}


def plain_number(quantity: str) -> str:
    """A Kubernetes quantity (``800m``, ``2k``) as the plain number KEDA's threshold wants."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", quantity)
    if match is None or match.group(2) not in ("", *_SUFFIX):
        raise ValueError(f"{quantity!r} is not a quantity")
    value = Decimal(match.group(1)) * _SUFFIX.get(match.group(2), Decimal(1))
    return format(value.normalize(), "f")


def _metric(body: schema.ServingEndpointBody) -> tuple[str, str, bool] | None:
    """(Prometheus metric, per-pod target, is it the server's queue) or None for CPU."""
    auto = body.autoscale
    if auto.customMetric is not None:
        return auto.customMetric.name, auto.customMetric.targetAverageValue, False
    queue = auto.queue_target
    if queue is not None:
        return modelserver.QUEUE_METRIC[body.runtime.kind], str(queue), True
    return None


def hpa(body: schema.ServingEndpointBody) -> dict[str, Any]:
    """The HPA's context; the server's queue under the name a Prometheus adapter gives it
    (``:`` cannot appear in a custom-metrics API name), a custom metric as named."""
    metric = _metric(body)
    pods = ({"name": metric[0].replace(":", "_") if metric[2] else metric[0],
             "target": metric[1]} if metric is not None else None)
    return {"min_replicas": body.replicas.min, "max_replicas": body.replicas.max,
            "pods_metric": pods, "cpu_utilization": body.autoscale.cpuUtilization}


def scaledobject(name: str, namespace: str, body: schema.ServingEndpointBody,
                 serving: repoconfig.Serving) -> dict[str, Any]:
    metric = _metric(body)
    trigger: dict[str, Any]
    if metric is None:
        trigger = {"type": "cpu", "metricType": "Utilization",
                   "metadata": {"value": str(body.autoscale.cpuUtilization)}}
    else:
        selector = f'namespace="{namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+"'
        trigger = {"type": "prometheus", "metadata": {
            "serverAddress": serving.prometheusUrl or "",
            "query": f"sum({metric[0]}{{{selector}}})",
            "threshold": plain_number(metric[1])}}
    return {"min_replicas": body.replicas.min, "max_replicas": body.replicas.max,
            "trigger": trigger}
