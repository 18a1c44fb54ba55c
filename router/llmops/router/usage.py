"""Token counts and the first token, read from an OpenAI-compatible answer as it passes.

Input: a whole JSON answer (``usage_of``) or the raw bytes of a server-sent
event stream, chunk by chunk as they arrive (``UsageScanner.feed``; events
may be split across chunks). Output: ``(prompt_tokens, completion_tokens)``
from the answer's ``usage`` object, and for a stream a call of
``on_first_token`` at the first event that carries a choice. The bytes are
only read, never changed. Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

MAX_PENDING = 1 << 20
"""Bytes of one unfinished event kept; a longer line is not scanned (and not counted)."""


def _counts(doc: Any) -> tuple[int, int] | None:
    usage = doc.get("usage") if isinstance(doc, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return max(prompt, 0), max(completion, 0)


def usage_of(content: bytes) -> tuple[int, int] | None:
    """The usage of a whole (non-streamed) answer, None when it has none or is not JSON."""
    try:
        return _counts(orjson.loads(content))
    except orjson.JSONDecodeError:
        return None


class UsageScanner:
    """Reads ``data:`` events of a stream for the first choice and the final usage."""

    def __init__(self, on_first_token: Callable[[], None]) -> None:
        self.on_first_token = on_first_token
        self.first_seen = False
        self.usage: tuple[int, int] | None = None
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_PENDING:
            self._pending = b""
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if not payload or payload == b"[DONE]":
            return
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if not self.first_seen and doc.get("choices"):
            self.first_seen = True
            self.on_first_token()
        counted = _counts(doc)
        if counted is not None:
            self.usage = counted
