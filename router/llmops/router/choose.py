"""Which variant serves a request: by weight, sticky by a header or a cookie.

Input: a ``RoutingTable`` and the request's stickiness key (the configured
header's or cookie's value, or None). Output: one ``Variant`` (or None when
the table has no variants: pass-through). A key always lands on the same
variant for the same experiment and weights, in every router process: the
point is a stable hash (sha256 of the experiment name and the key), never
``hash()`` or process-local randomness. A request without a key draws a
fresh point. Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

import hashlib
import secrets

from llmops.router.table import RoutingTable, Variant

SCALE = 1 << 64


def point_of(experiment: str, key: str) -> float:
    """A stable point in [0, 1) for an experiment and a stickiness key."""
    digest = hashlib.sha256(f"{experiment}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / SCALE


def random_point() -> float:
    return secrets.randbits(64) / SCALE


def pick(table: RoutingTable, key: str | None) -> Variant | None:
    """The variant whose share of the weights holds the request's point."""
    if not table.variants:
        return None
    live = [v for v in table.variants if v.weight > 0]
    if len(live) == 1:
        return live[0]
    point = point_of(table.label, key) if key else random_point()
    target = point * sum(v.weight for v in live)
    upto = 0
    for variant in live:
        upto += variant.weight
        if target < upto:
            return variant
    return live[-1]
