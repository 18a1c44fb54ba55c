"""Kubernetes resource quantities (``500m``, ``0.5``, ``24Gi``, ``1e3``) as numbers.

Input: a quantity as text (or a YAML number). Output: its exact value as a ``Decimal``,
or None when it is not a quantity. Used to accept numbers where specs take quantities
(``cpu: 0.5``, as Kubernetes does) and to compare a rendered quantity with the canonical
form the API server stores (``4000m`` is ``4``, ``24576Mi`` is ``24Gi``): equal values are
no change.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse(value: Any) -> Decimal | None:
    """The value of a quantity (text or number), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    found = _QUANTITY.match(value.strip())
    if found is None:
        return None
    try:
        number = Decimal(found["number"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        return None
    suffix = found["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))


def same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same quantity (both must parse)."""
    left, right = parse(a), parse(b)
    return left is not None and right is not None and left == right


def from_number(value: Any) -> Any:
    """A YAML number where a quantity goes, as the text Kubernetes reads (``0.5`` -> ``"0.5"``);
    anything else unchanged (and validated as text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (
            format(Decimal(str(value)).normalize(), "f") if isinstance(value, float) else str(value)
        )
    return value
