"""The experiment page's table: one row per variant, its metric and its significance.

Role: turn the REST read of one experiment (``ExperimentOut``: the declared
variants and weights, and, when Prometheus answered, ``metrics`` with each
variant's measurements and the comparisons of every variant against the
control) into rows a reader compares at a glance: requests, the value of the
experiment's metric (a mean for latencies and token counts, a rate for
``error_rate`` / ``success_rate``) with the samples it rests on, and, for each
variant but the control, the p-value, the confidence (1 - p), whether that is
significant at ``ALPHA``, and how many more samples per variant a test at
``POWER`` needs. Nothing is computed from Prometheus here: the numbers are
the use case's (``llmops.engine.service.experiments``), only arranged.
Input: ``ExperimentOut``. Output: ``VariantRow`` values. Caller:
``llmops.api.dashboard.pages.experiment``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmops.api.resources import ComparisonOut, ExperimentOut, VariantMetricsOut
from llmops.engine.service import experiments, significance

ALPHA = significance.ALPHA
POWER = significance.POWER


@dataclass(frozen=True, slots=True)
class VariantRow:
    name: str
    weight: int | None
    """Declared weight (percent); None for a variant only Prometheus knows."""
    effective_weight: int | None
    winner: bool
    control: bool
    measured: bool
    """Whether Prometheus answered for the experiment (else every measure is None)."""
    requests: int | None = None
    value: float | None = None
    """The experiment's metric for this variant (a mean, or a rate in 0..1)."""
    rate: bool = False
    samples: int | None = None
    comparison: ComparisonOut | None = None

    @property
    def confidence(self) -> float | None:
        """1 - p: how sure the test is that this variant differs from the control."""
        c = self.comparison
        return None if c is None or c.p_value is None else 1.0 - c.p_value


def metric_value(metric: str, measured: VariantMetricsOut) -> tuple[float | None, int, bool]:
    """(value, samples, is a rate) of ``metric`` for one variant; (None, 0, False) when the
    router does not measure it (the metrics' ``note`` says so)."""
    if metric in experiments.RATES:
        rate = measured.error_rate
        if rate is not None and metric == "success_rate":
            rate = 1.0 - rate
        return rate, measured.requests, True
    attribute = experiments.MEANS.get(metric)
    if attribute is None:
        return None, 0, False
    distribution = getattr(measured, attribute)
    return distribution.mean, distribution.count, False


def rows(exp: ExperimentOut) -> list[VariantRow]:
    """The declared variants in order, then any measured variant the spec does not name."""
    metrics = exp.metrics
    measured = {m.variant: m for m in metrics.variants} if metrics else {}
    compared = {c.variant: c for c in metrics.comparisons} if metrics else {}
    declared = {v.template.name: v for v in exp.variants}
    out = []
    for name in [*declared, *(n for n in measured if n not in declared)]:
        spec = declared.get(name)
        row = VariantRow(name=name, weight=spec.weight if spec else None,
                         effective_weight=spec.effective_weight if spec else None,
                         winner=name == exp.winner,
                         control=metrics is not None and name == metrics.control,
                         measured=metrics is not None)
        found = measured.get(name)
        if found is not None and metrics is not None:
            value, samples, rate = metric_value(metrics.metric, found)
            row = replace(row, requests=found.requests, value=value, samples=samples,
                          rate=rate, comparison=compared.get(name))
        out.append(row)
    return out
