"""GPU use and tokens over a time window: ``GET /costs?window=24h``.

Role: what the seed's cost dashboard shows, per team, per environment and
per endpoint (and per training job): serving GPU hours, training GPU hours,
and prompt/completion tokens. GPU hours are integrated from the GPU samples
the reconciler records (``state.gpu_samples``; ``workload`` serving: an
endpoint's ``gpus x replicas``; training: a running job's GPUs). Each sample
is a step: its value holds from its time until the next sample of the same
workload (workload, environment, name) or the end of the window. The last
sample taken in the ``CARRY_IN`` (24 h) before the window start counts from
the start, so a steady workload is not missed at the window's edge; an older
one is taken as gone (the reconciler samples every 15 minutes while it
runs). Tokens are the prompt routers' prompt and completion tokens per endpoint
over the window, read from Prometheus (``LLMOPS_PROMETHEUS__URL``; without
it there are none, and ``tokensError`` says why when Prometheus fails). ``window`` is
``<n>h`` or ``<n>d`` from 1h to 90d (``WINDOW_PATTERN``, published as the
parameter's ``pattern``: anything else is a 422 naming it); ``until`` (default:
now) ends it. Input: query parameters; the store. Output: ``CostReport`` in
the envelope. Needs ``costs:read``. Caller: ``llmops.api.app`` mounts
``router``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from llmops.api import errors
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import SettingsDep, StoreDep
from llmops.api.envelope import Envelope, success
from llmops.api.params import RANGE_HELP, Instant
from llmops.api.resources import CostReport, GpuHours
from llmops.engine.errors import Unavailable
from llmops.engine.service import access, experiments
from llmops.engine.settings import Settings
from llmops.engine.spec.schema import Permission
from llmops.engine.store import catalog, db, state
from llmops.engine.types import Kind

router = APIRouter(tags=["costs"], responses=AUTH_RESPONSES)

WINDOW_PATTERN = (r"^(?:(?:[1-9][0-9]{0,2}|1[0-9]{3}|20[0-9]{2}|21[0-5][0-9]|2160)h"
                  r"|(?:[1-9]|[1-8][0-9]|90)d)$")
"""1h..2160h or 1d..90d, no leading zero: exactly the windows ``parse_window`` takes."""
WINDOW_RE = re.compile(WINDOW_PATTERN)
MAX_WINDOW = timedelta(days=90)
CARRY_IN = timedelta(hours=24)
HOUR = 3600.0

Workload = tuple[str, str, str]  # (workload, environment, endpoint or job)
SERVING, TRAINING = "serving", "training"


@dataclass(frozen=True, slots=True)
class Tokens:
    """An endpoint's tokens over the window, with the team that owns the endpoint."""

    usage: experiments.TokenUsage
    team: str


def parse_window(window: str) -> timedelta:
    """``24h`` / ``7d`` as a duration; ``BadRequest`` for anything ``WINDOW_PATTERN``
    does not match (the route's query parameter has refused those with a 422 already)."""
    if WINDOW_RE.fullmatch(window) is None:
        raise errors.BadRequest("window must be 1h to 2160h or 1d to 90d, e.g. 24h or 7d",
                                {"window": window[:32]})
    amount, unit = int(window[:-1]), window[-1]
    return timedelta(hours=amount) if unit == "h" else timedelta(days=amount)


def integrate(samples: Iterable[state.GpuSample], since: datetime, until: datetime
              ) -> dict[Workload, tuple[str, float]]:
    """GPU hours per workload (with its latest team) between ``since`` and ``until``.

    ``samples`` in time order; those before ``since`` only carry their value
    in from ``since`` (the latest one of each workload).
    """
    by_workload: dict[Workload, list[state.GpuSample]] = defaultdict(list)
    for sample in samples:
        by_workload[(sample.workload, sample.environment, sample.endpoint)].append(sample)
    out: dict[Workload, tuple[str, float]] = {}
    for workload, series in by_workload.items():
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
        out[workload] = (steps[-1].team, hours)
    return out


class _Totals:
    """Running sums of one group: serving and training GPU hours, tokens."""

    def __init__(self) -> None:
        self.serving = self.training = 0.0
        self.prompt = self.completion = 0

    def add_hours(self, workload: str, hours: float) -> None:
        if workload == TRAINING:
            self.training += hours
        else:
            self.serving += hours

    def row(self, **names: str) -> GpuHours:
        return GpuHours(**names, gpu_hours=round(self.serving + self.training, 6),
                        serving_gpu_hours=round(self.serving, 6),
                        training_gpu_hours=round(self.training, 6),
                        prompt_tokens=self.prompt, completion_tokens=self.completion)


def _report(window: str, since: datetime, end: datetime,
            hours: dict[Workload, tuple[str, float]],
            tokens: Iterable[Tokens]) -> CostReport:
    total = _Totals()
    groups: dict[str, dict[str, _Totals]] = {g: defaultdict(_Totals) for g in ("team", "env")}
    workloads: dict[Workload, _Totals] = defaultdict(_Totals)
    teams: dict[Workload, str] = {}
    for (kind, env, name), (team, value) in hours.items():
        for sums in (total, groups["team"][team], groups["env"][env], workloads[(kind, env, name)]):
            sums.add_hours(kind, value)
        teams[(kind, env, name)] = team
    for team, used in ((t.team, t.usage) for t in tokens):
        key = (SERVING, used.environment, used.endpoint)
        teams.setdefault(key, team)
        for sums in (total, groups["team"][team], groups["env"][used.environment],
                     workloads[key]):
            sums.prompt += used.prompt_tokens
            sums.completion += used.completion_tokens
    rows = {kind: [workloads[k].row(environment=k[1], team=teams[k],
                                    **({"endpoint": k[2]} if kind == SERVING
                                       else {"training_job": k[2]}))
                   for k in sorted(workloads) if k[0] == kind] for kind in (SERVING, TRAINING)}
    overall = total.row()
    return CostReport(
        window=window, since=since, until=end, total_gpu_hours=overall.gpu_hours,
        serving_gpu_hours=overall.serving_gpu_hours,
        training_gpu_hours=overall.training_gpu_hours, prompt_tokens=total.prompt,
        completion_tokens=total.completion,
        by_team=[v.row(team=k) for k, v in sorted(groups["team"].items())],
        by_environment=[v.row(environment=k) for k, v in sorted(groups["env"].items())],
        by_endpoint=rows[SERVING], by_training_job=rows[TRAINING])


@router.get("/costs", response_model=Envelope[CostReport],
            summary="GPU hours and tokens over a window",
            dependencies=[require(Permission.COSTS_READ)])
def costs(
    store: StoreDep,
    settings: SettingsDep,
    window: Annotated[str, Query(pattern=WINDOW_PATTERN, description=(
        "<n>h or <n>d, from 1h to 90d (2160h), without leading zeros."))] = "24h",
    until: Annotated[Instant | None, Query(description="End of the window (default now). "
                                                       + RANGE_HELP)] = None,
) -> Envelope[CostReport]:
    """Serving and training GPU hours and tokens per team, environment, endpoint and job."""
    span = parse_window(window)
    end = datetime.now(UTC) if until is None else until
    since = end - span
    samples = state.gpu_samples(store, since=since - CARRY_IN, until=end)
    tokens, tokens_error = _tokens(store, settings, since, end)
    report = _report(window, since, end, integrate(samples, since, end), tokens)
    if tokens_error:
        report = report.model_copy(update={"tokens_error": tokens_error})
    return success(report, f"{report.total_gpu_hours} GPU hours over {window}")


def _tokens(store: db.Store, settings: Settings, since: datetime,
            until: datetime) -> tuple[list[Tokens], str]:
    """The prompt routers' tokens per endpoint over the window, each with its endpoint's
    team, from Prometheus; none without ``LLMOPS_PROMETHEUS__URL``; (rows, why none)."""
    if not settings.prometheus.url:
        return [], ""
    reader = experiments.PrometheusHttp(settings.prometheus.url, settings.prometheus.timeout)
    try:
        rows = experiments.token_usage(reader, until=until, window=until - since)
    except Unavailable as exc:
        return [], str(exc)
    teams = {(e.environment, e.name): access.owner_team(store, e)
             for e in catalog.list_entries(store, kind=Kind.SERVING_ENDPOINT)}
    return [Tokens(row, teams.get((row.environment, row.endpoint), "unowned"))
            for row in rows], ""
