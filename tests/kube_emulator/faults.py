"""Fault injection and request counters.

Input: faults queued by a test (`EmulatorServer.faults`) and every incoming
request (method, path). Output: the fault to act on for a request, if any, and
counters of requests by method and path. Called by `server` before routing.

Faults are consumed in the order they were added: the first fault whose
method and path pattern match and that has uses left answers the request.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ERROR_REASONS = {
    429: "TooManyRequests", 500: "InternalError", 502: "BadGateway",
    503: "ServiceUnavailable", 504: "Timeout",
}


@dataclass
class Fault:
    """One injected misbehaviour.

    `action` is "status" (answer `status` with a Status body; 429 adds Retry-After),
    "hang" (wait `seconds`, then serve the request normally, so a client that timed
    out may still find its write done), or "drop" (close the connection without an
    answer). `method` matches exactly (case-insensitive); `path` is a regex searched
    in the URL path (without the query).
    """
    action: str
    times: int = 1
    status: int = 500
    seconds: float = 0.0
    retry_after: int = 1
    method: str | None = None
    path: str | None = None
    message: str = "injected fault"
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path and not re.search(self.path, path))

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "action", "times", "status", "seconds", "retry_after", "method", "path",
            "message", "hits")}


class Faults:
    """The queue of pending faults. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.release = threading.Event()  # set on shutdown: hanging requests end

    def add(self, fault: Fault) -> Fault:
        if fault.action not in ("status", "hang", "drop"):
            raise ValueError(f"unknown fault action {fault.action!r}")
        with self._lock:
            self._faults.append(fault)
        return fault

    def error(self, status: int = 500, *, times: int = 1, method: str | None = None,
              path: str | None = None, message: str = "injected fault") -> Fault:
        """Answer the next `times` matching requests with HTTP `status` (500, 503, ...)."""
        return self.add(Fault("status", times, status=status, method=method, path=path,
                              message=message))

    def throttle(self, retry_after: int = 1, *, times: int = 1, method: str | None = None,
                 path: str | None = None) -> Fault:
        """Answer 429 TooManyRequests with a `Retry-After` header."""
        return self.add(Fault("status", times, status=429, retry_after=retry_after,
                              method=method, path=path,
                              message="Too many requests, please try again later."))

    def hang(self, seconds: float, *, times: int = 1, method: str | None = None,
             path: str | None = None) -> Fault:
        """Hold the next matching requests for `seconds` before serving them."""
        return self.add(Fault("hang", times, seconds=seconds, method=method, path=path))

    def drop(self, *, times: int = 1, method: str | None = None,
             path: str | None = None) -> Fault:
        """Close the connection of the next matching requests without answering."""
        return self.add(Fault("drop", times, method=method, path=path))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.hits < f.times]

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None


@dataclass
class Stats:
    """Counters of requests seen (faulted ones included)."""
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[(method, path)] += 1

    def by_method(self) -> Counter[str]:
        with self._lock:
            out: Counter[str] = Counter()
            for (method, _), n in self.requests.items():
                out[method] += n
            return out

    def matching(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, p), n in self.requests.items()
                       if (method is None or m == method.upper())
                       and (path is None or re.search(path, p)))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
