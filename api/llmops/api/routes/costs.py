"""GPU usage over a time window: ``GET /costs?window=24h``.

Role: GPU hours per team, per environment and per endpoint, integrated from
the GPU samples the reconciler records (``state.gpu_samples``). Each sample
is a step: its ``gpus x replicas`` holds from its time until the next sample
of the same endpoint (environment, endpoint) or the end of the window. The
last sample taken in the ``CARRY_IN`` (24 h) before the window start counts
from the start, so an endpoint that runs steadily is not missed at the
window's edge; an older one is taken as gone (the reconciler samples every
15 minutes while it runs). ``window`` is ``<n>h`` or ``<n>d``, at most 90 days (400 otherwise);
``until`` (default: now) ends it. Input: query parameters; the store.
With ``LLMOPS_PROMETHEUS__URL`` set, ``tokens`` adds the prompt routers'
prompt and completion tokens per endpoint over the same window
(``token_side``). Output: ``CostReport`` in the envelope. Needs ``costs:read``. Caller:
``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from llmops.api import errors
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import SettingsDep, StoreDep
from llmops.api.envelope import Envelope, Failure, success
from llmops.api.resources import CostReport, GpuHours, TokenUsageOut
from llmops.engine.errors import Unavailable
from llmops.engine.service import experiments
from llmops.engine.settings import Settings
from llmops.engine.spec.schema import Permission
from llmops.engine.store import state

router = APIRouter(tags=["costs"], responses=AUTH_RESPONSES)

WINDOW_RE = re.compile(r"^(\d{1,5})([hd])$")
MAX_WINDOW = timedelta(days=90)
CARRY_IN = timedelta(hours=24)
HOUR = 3600.0

EndpointId = tuple[str, str]  # (environment, endpoint)


def parse_window(window: str) -> timedelta:
    """``24h`` / ``7d`` as a duration; ``BadRequest`` for anything else or over 90 days."""
    match = WINDOW_RE.match(window)
    if match is None:
        raise errors.BadRequest("window must look like 24h or 7d", {"window": window[:32]})
    amount, unit = int(match.group(1)), match.group(2)
    span = timedelta(hours=amount) if unit == "h" else timedelta(days=amount)
    if span <= timedelta(0) or span > MAX_WINDOW:
        raise errors.BadRequest("window must be more than 0 and at most 90d",
                                {"window": window})
    return span


def integrate(samples: Iterable[state.GpuSample], since: datetime, until: datetime
              ) -> dict[EndpointId, tuple[str, float]]:
    """GPU hours per endpoint (with its latest team) between ``since`` and ``until``.

    ``samples`` in time order; those before ``since`` only carry their value
    in from ``since`` (the latest one of each endpoint).
    """
    by_endpoint: dict[EndpointId, list[state.GpuSample]] = defaultdict(list)
    for sample in samples:
        by_endpoint[(sample.environment, sample.endpoint)].append(sample)
    out: dict[EndpointId, tuple[str, float]] = {}
    for endpoint, series in by_endpoint.items():
        before = [s for s in series if s.recorded_at < since]
        inside = [s for s in series if since <= s.recorded_at < until]
        steps = ([before[-1]] if before else []) + inside
        if not steps:
            continue
        hours = 0.0
        for i, sample in enumerate(steps):
            start = max(sample.recorded_at, since)
            end = steps[i + 1].recorded_at if i + 1 < len(steps) else until
            hours += sample.gpus * sample.replicas * (end - start).total_seconds() / HOUR
        out[endpoint] = (steps[-1].team, hours)
    return out


def _rows(totals: dict[str, float], field: str) -> list[GpuHours]:
    return [GpuHours(**{field: key}, gpu_hours=round(value, 6))
            for key, value in sorted(totals.items())]


@router.get("/costs", response_model=Envelope[CostReport], summary="GPU hours over a window",
            dependencies=[require(Permission.COSTS_READ)],
            responses={400: {"model": Failure, "description": "The window is malformed."}})
def costs(
    store: StoreDep,
    settings: SettingsDep,
    window: Annotated[str, Query(max_length=16, description="<n>h or <n>d, at most 90d.")]
    = "24h",
    until: Annotated[datetime | None, Query(description="End of the window (default now); "
                                                        "without an offset: UTC.")] = None,
) -> Envelope[CostReport]:
    """GPU hours per team, environment and endpoint over the window ending at ``until``."""
    span = parse_window(window)
    end = datetime.now(UTC) if until is None else (
        until if until.tzinfo is not None else until.replace(tzinfo=UTC))
    since = end - span
    samples = state.gpu_samples(store, since=since - CARRY_IN, until=end)
    per_endpoint = integrate(samples, since, end)
    teams: dict[str, float] = defaultdict(float)
    environments: dict[str, float] = defaultdict(float)
    for (environment, _endpoint), (team, hours) in per_endpoint.items():
        teams[team] += hours
        environments[environment] += hours
    endpoints = [GpuHours(environment=env, endpoint=name, team=team, gpu_hours=round(hours, 6))
                 for (env, name), (team, hours) in sorted(per_endpoint.items())]
    report = CostReport(window=window, since=since, until=end,
                        total_gpu_hours=round(sum(teams.values()), 6),
                        by_team=_rows(teams, "team"),
                        by_environment=_rows(environments, "environment"),
                        by_endpoint=endpoints)
    if settings.prometheus.url:
        report = report.model_copy(update=token_side(settings, since, end))
    return success(report, f"{report.total_gpu_hours} GPU hours over {window}")


def token_side(settings: Settings, since: datetime, until: datetime) -> dict[str, Any]:
    """The token side of costs: tokens per endpoint from Prometheus (or why there are none)."""
    reader = experiments.PrometheusHttp(settings.prometheus.url, settings.prometheus.timeout)
    try:
        rows = experiments.token_usage(reader, until=until, window=until - since)
    except Unavailable as exc:
        return {"tokens_error": str(exc)}
    return {"tokens": [TokenUsageOut.model_validate(asdict(row)) for row in rows]}
