"""GPU cost: the GPUs a revision reserves per team and environment, and the change between two.

Input: one validated ``SpecSet`` (``usage``) or a base and a head
(``cost_delta``). Output: ``GpuUsage`` rows (team, environment, GPUs, GPU
hours and money per month) and ``CostDelta`` rows pairing the two sides.
Called by ``llmops.engine.plan.planner`` (the cost table of a plan) and the API's
cost report.

How it counts (one month = 730 hours):

- an endpoint reserves ``resources.gpu`` per replica; ``gpus_min`` counts it
  at ``replicas.min`` (the floor the autoscaler keeps) and ``gpus_max`` at
  ``replicas.max`` (the ceiling, which is also what GPU budgets count);
- a training job counts its ``resources.gpu`` in both, as if it ran all month:
  an upper bound, since a job ends;
- money is GPU hours x ``pricePerGpuHour`` of the team's budget in that
  environment. Both sides are priced at the head's price (the base's when the
  head sets none), so a delta shows what the change in GPUs costs; with no
  price anywhere, money is ``None`` and only GPUs and GPU hours are reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmops.engine.spec import schema
from llmops.engine.spec.validate import SpecSet

HOURS_PER_MONTH = 730


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """GPUs one team reserves in one environment."""

    team: str
    environment: str
    gpus_min: int
    gpus_max: int
    price_per_gpu_hour: float | None = None

    @property
    def gpu_hours_min(self) -> int:
        return self.gpus_min * HOURS_PER_MONTH

    @property
    def gpu_hours_max(self) -> int:
        return self.gpus_max * HOURS_PER_MONTH

    @property
    def monthly_min(self) -> float | None:
        return _money(self.gpu_hours_min, self.price_per_gpu_hour)

    @property
    def monthly_max(self) -> float | None:
        return _money(self.gpu_hours_max, self.price_per_gpu_hour)


@dataclass(frozen=True, slots=True)
class CostDelta:
    """One team and environment, base against head (a missing side reserves nothing)."""

    team: str
    environment: str
    base: GpuUsage
    head: GpuUsage

    @property
    def gpus_min_delta(self) -> int:
        return self.head.gpus_min - self.base.gpus_min

    @property
    def gpus_max_delta(self) -> int:
        return self.head.gpus_max - self.base.gpus_max

    @property
    def gpu_hours_max_delta(self) -> int:
        return self.head.gpu_hours_max - self.base.gpu_hours_max

    @property
    def monthly_min_delta(self) -> float | None:
        return _sub(self.head.monthly_min, self.base.monthly_min)

    @property
    def monthly_max_delta(self) -> float | None:
        return _sub(self.head.monthly_max, self.base.monthly_max)

    @property
    def changed(self) -> bool:
        return self.gpus_min_delta != 0 or self.gpus_max_delta != 0


def _money(hours: int, price: float | None) -> float | None:
    return None if price is None else round(hours * price, 2)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def prices(spec_set: SpecSet) -> dict[tuple[str, str], float]:
    """pricePerGpuHour per (team, environment), from every Policy's budgets."""
    out: dict[tuple[str, str], float] = {}
    for policy in spec_set.policies():
        for budget in policy.spec.gpuBudgets:
            if budget.pricePerGpuHour is not None:
                out.setdefault((budget.team, budget.environment), budget.pricePerGpuHour)
    return out


def _reserved(spec_set: SpecSet) -> dict[tuple[str, str], tuple[int, int]]:
    """(team, environment) -> (GPUs at replicas.min, GPUs at replicas.max)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}

    def add(slot: tuple[str, str], low: int, high: int) -> None:
        old = out.get(slot, (0, 0))
        out[slot] = (old[0] + low, old[1] + high)

    for endpoint in spec_set.of(schema.ServingEndpointSpec):
        gpu = endpoint.spec.resources.gpu
        add((spec_set.team_of(endpoint), endpoint.environment),
            gpu * endpoint.spec.replicas.min, gpu * endpoint.spec.replicas.max)
    for job in spec_set.of(schema.TrainingJobSpec):
        gpu = job.spec.resources.gpu
        add((spec_set.team_of(job), job.environment), gpu, gpu)
    return out


def usage(spec_set: SpecSet, environments: Iterable[str] | None = None,
          price_list: dict[tuple[str, str], float] | None = None) -> tuple[GpuUsage, ...]:
    """GPU usage per team and environment, sorted; priced from ``spec_set``'s policies."""
    wanted = None if environments is None else set(environments)
    price_of = prices(spec_set) if price_list is None else price_list
    return tuple(
        GpuUsage(team, env, low, high, price_of.get((team, env)))
        for (team, env), (low, high) in sorted(_reserved(spec_set).items())
        if (wanted is None or env in wanted) and (low or high)
    )


def cost_delta(base: SpecSet | None, head: SpecSet,
               environments: Iterable[str] | None = None) -> tuple[CostDelta, ...]:
    """Usage of ``base`` (nothing when None) against ``head``, per team and environment."""
    wanted = None if environments is None else set(environments)
    price_of = {**(prices(base) if base is not None else {}), **prices(head)}
    before = _reserved(base) if base is not None else {}
    after = _reserved(head)
    out: list[CostDelta] = []
    for team, env in sorted(set(before) | set(after)):
        if wanted is not None and env not in wanted:
            continue
        price = price_of.get((team, env))
        b_low, b_high = before.get((team, env), (0, 0))
        h_low, h_high = after.get((team, env), (0, 0))
        if not (b_low or b_high or h_low or h_high):
            continue
        out.append(CostDelta(team, env, GpuUsage(team, env, b_low, b_high, price),
                             GpuUsage(team, env, h_low, h_high, price)))
    return tuple(out)
