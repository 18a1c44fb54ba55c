"""Prometheus metrics of the reconciler, on a registry of their own.

Input: events from the reconciler and the daemon. Output: a
``CollectorRegistry`` that the daemon serves on its metrics port. Called by
the daemon (which passes ``PrometheusMetrics`` to the reconciler).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from llmops.engine.run import reconciler

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class PrometheusMetrics(reconciler.Metrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "llmops_reconcile_stage_duration_seconds", "Time spent per reconcile stage.",
            ["environment", "stage"], buckets=STAGE_BUCKETS, registry=r)
        self.pass_seconds = Histogram(
            "llmops_reconcile_duration_seconds", "Time of one whole reconcile pass.",
            buckets=STAGE_BUCKETS, registry=r)
        self.runs = Counter("llmops_reconcile_runs_total", "Reconcile passes by result.",
                            ["environment", "result"], registry=r)
        self.object_changes = Counter(
            "llmops_objects_total", "Objects created, configured, deleted, failed.",
            ["environment", "action"], registry=r)
        self.drift = Gauge("llmops_drifted_objects", "Objects found drifted in the last pass.",
                           ["environment"], registry=r)
        self.last_success = Gauge(
            "llmops_last_success_timestamp_seconds",
            "Unix time of the last successful reconcile.", ["environment"], registry=r)
        self.fetch_failures = Counter("llmops_source_fetch_failures_total",
                                      "Failed fetches of the specs repo.", registry=r)
        self.revision = Gauge("llmops_revision_info", "The revision each environment is at.",
                              ["environment", "revision"], registry=r)
        self.leader = Gauge("llmops_leader", "1 while this daemon holds the lease.", registry=r)
        self.store_up = Gauge("llmops_store_up", "0 after a pass the store did not answer "
                              "(nothing applied), 1 after one it did.", registry=r)
        self.endpoint_gpus = Gauge(
            "llmops_endpoint_gpus",
            "GPUs an applied endpoint holds (GPUs per replica x minimum replicas); "
            "avg_over_time(...[24h]) * 24 gives GPU-hours.",
            ["environment", "team", "endpoint"], registry=r)
        self.anchor_failures = Counter(
            "llmops_audit_anchor_failures_total",
            "Audit anchors not written outside the database (retried next pass).",
            ["sink"], registry=r)
        self.anchored = Gauge("llmops_audit_anchor_timestamp_seconds",
                              "Unix time of the last audit anchor written.", ["sink"],
                              registry=r)
        self._revisions: dict[str, str] = {}
        self._gpu_labels: dict[str, set[tuple[str, str]]] = {}

    def stage(self, environment: str, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(environment, stage).observe(seconds)

    def run(self, environment: str, result: str) -> None:
        self.runs.labels(environment, result).inc()

    def objects(self, environment: str, action: str, count: int) -> None:
        if count:
            self.object_changes.labels(environment, action).inc(count)

    def drifted(self, environment: str, count: int) -> None:
        self.drift.labels(environment).set(count)

    def succeeded(self, environment: str, revision: str) -> None:
        self.last_success.labels(environment).set(time.time())
        previous = self._revisions.get(environment)
        if previous and previous != revision:
            self.revision.remove(environment, previous)
        self._revisions[environment] = revision
        self.revision.labels(environment, revision).set(1)

    def fetch_failed(self) -> None:
        self.fetch_failures.inc()

    def gpus(self, environment: str, allocation: dict[tuple[str, str], int]) -> None:
        stale = self._gpu_labels.get(environment, set()) - set(allocation)
        for team, endpoint in stale:
            self.endpoint_gpus.remove(environment, team, endpoint)
        for (team, endpoint), count in allocation.items():
            self.endpoint_gpus.labels(environment, team, endpoint).set(count)
        self._gpu_labels[environment] = set(allocation)

    def audit_anchor(self, sink: str, ok: bool) -> None:
        if ok:
            self.anchored.labels(sink).set(time.time())
        else:
            self.anchor_failures.labels(sink).inc()

    def pass_duration(self, seconds: float) -> None:
        self.pass_seconds.observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` (0 picks a free port); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
