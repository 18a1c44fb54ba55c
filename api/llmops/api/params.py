"""Bounded request parameters: row ids, cursors, instants and stream ids every route
shares, so bad input is a 422 naming the field (and the OpenAPI says the bounds).

Role: a value outside what the store or the clock can hold (an id of 2^63, a
time in year 1 at +14:00, which overflows when made UTC, a Redis stream id
past 2^64) used to reach the database or ``datetime`` arithmetic and answer
500. Each type here validates before the route runs: integers carry
``ge``/``le`` (published as ``minimum``/``maximum``), instants are made UTC
(no offset: UTC) and parsed only when they match ``INSTANT_PATTERN`` (published as
the parameter's ``pattern``: a calendar date in 1970-9998, never a number), stream ids
are two numbers of at most 19 digits (published as their ``pattern``).
Input: query and path values. Output: validated Python values, or FastAPI's
``RequestValidationError`` (422 envelope via ``llmops.api.errors``). Callers:
the routes in ``llmops.api.routes`` and the dashboard pages.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

MAX_ROW_ID = 2**63 - 1
"""Largest id a row can have (a signed 64-bit integer in SQLite and PostgreSQL)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
_YEAR = r"(?:19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_LEAP_YEAR = (r"(?:19(?:7[26]|8[048]|9[26])|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])"
              r"|(?:[2468][048]|[3579][26])00)")
_MONTH_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
              r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))")
INSTANT_PATTERN = (rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
                   r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
                   r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$")
"""What a time parameter accepts, published as its ``pattern``: a real calendar date in
the years 1970-9998, ``T``, ``hh:mm[:ss[.ffffff]]``, then ``Z``, ``+hh:mm``, ``-hh:mm`` or
nothing (UTC). Nothing else is parsed (not a number, not a bare date), so the schema and
the code agree on every string; no such time overflows when made UTC."""
RANGE_HELP = ("ISO 8601 / RFC 3339 with an upper-case T, e.g. 2026-01-31T12:00:00Z: a "
              f"calendar date in the years 1970-9998 (so between {EARLIEST.isoformat()} "
              "and 9999-01-01, give or take the offset), hh:mm[:ss[.ffffff]], then Z, "
              "+hh:mm, -hh:mm or nothing (a time without an offset is taken as UTC).")
MAX_STREAM_PART_DIGITS = 19
STREAM_ID_PATTERN = r"^[0-9]{1,19}(-[0-9]{1,19})?$"
"""A Redis stream id ``<ms>[-<seq>]``; 19 digits always fit Redis's unsigned 64 bits."""
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
_INSTANT = re.compile(INSTANT_PATTERN)


def instant(value: datetime) -> datetime:
    """``value`` in UTC (naive: taken as UTC) within ``EARLIEST``..``LATEST``; else a
    ``ValueError`` that the 422 names the field with (the dashboard's own time fields)."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range once made UTC") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(f"time must lie between {EARLIEST.isoformat()} and "
                         f"{LATEST.isoformat()}")
    return utc


def instant_text(value: object) -> datetime:
    """A time parameter as sent (a string matching ``INSTANT_PATTERN``), in UTC; else a
    ``ValueError`` (422 naming the field). Strict: pydantic's lax mode would take ``0.5``
    as a Unix time, and a bare date or a space for ``T``, which the schema does not."""
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise ValueError("not a time of the form 2026-01-31T12:00:00Z (years 1970-9998; "
                         "offset Z, +hh:mm, -hh:mm or none for UTC)")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def stream_id(value: str) -> str:
    """A Redis stream id (``<ms>`` or ``<ms>-<seq>``), each part at most 19 digits."""
    if not _STREAM_ID.fullmatch(value):
        raise ValueError(f"a stream id is <ms>-<seq>, each part at most "
                         f"{MAX_STREAM_PART_DIGITS} digits")
    return value


Instant = Annotated[datetime, BeforeValidator(instant_text),
                    WithJsonSchema({"type": "string", "pattern": INSTANT_PATTERN})]
StreamId = Annotated[str, AfterValidator(stream_id),
                     WithJsonSchema({"type": "string", "pattern": STREAM_ID_PATTERN})]
