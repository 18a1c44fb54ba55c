"""Bounded request parameters: row ids, cursors, instants and stream ids every route
shares, so bad input is a 422 naming the field (and the OpenAPI says the bounds).

Role: a value outside what the store or the clock can hold (an id of 2^63, a
time in year 1 at +14:00, which overflows when made UTC, a Redis stream id
past 2^64) used to reach the database or ``datetime`` arithmetic and answer
500. Each type here validates before the route runs: integers carry
``ge``/``le`` (published as ``minimum``/``maximum``), instants are made UTC
(no offset: UTC) and kept between ``EARLIEST`` and ``LATEST`` (said in the
parameter's description), stream ids are two unsigned 64-bit numbers.
Input: query and path values. Output: validated Python values, or FastAPI's
``RequestValidationError`` (422 envelope via ``llmops.api.errors``). Callers:
the routes in ``llmops.api.routes`` and the dashboard pages.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

MAX_ROW_ID = 2**63 - 1
"""Largest id a row can have (a signed 64-bit integer in SQLite and PostgreSQL)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
RANGE_HELP = (f"ISO 8601, between {EARLIEST.isoformat()} and {LATEST.isoformat()}; "
              "a time without an offset is taken as UTC.")
MAX_STREAM_PART = 2**64 - 1
STREAM_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
_STREAM_ID = re.compile(STREAM_ID_PATTERN)


def instant(value: datetime) -> datetime:
    """``value`` in UTC (naive: taken as UTC) within ``EARLIEST``..``LATEST``; else a
    ``ValueError`` that the 422 names the field with."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range once made UTC") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(f"time must lie between {EARLIEST.isoformat()} and "
                         f"{LATEST.isoformat()}")
    return utc


def stream_id(value: str) -> str:
    """A Redis stream id (``<ms>`` or ``<ms>-<seq>``), each part at most 2^64 - 1."""
    if not _STREAM_ID.match(value) or any(int(part) > MAX_STREAM_PART
                                          for part in value.split("-")):
        raise ValueError(f"a stream id is <ms>-<seq>, each at most {MAX_STREAM_PART}")
    return value


Instant = Annotated[datetime, AfterValidator(instant)]
StreamId = Annotated[str, AfterValidator(stream_id)]
