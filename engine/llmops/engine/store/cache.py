"""Redis status cache, run-event stream and wake-up channel (optional, never the truth).

Role: lets the API answer status queries and follow finished runs without
touching SQL on every request, and lets ``POST /reconcile/trigger`` wake the
daemon on another host. Input: a Redis URL and what the daemon writes
(environment status as JSON-like mappings, one event per finished run).
Output: the same values read back, or ``None`` / ``False`` / ``[]`` whenever
Redis cannot vouch for them. Callers: the daemon (``put_environment``,
``publish_run``, ``listen_wake``) and the API (``get_environment``,
``read_runs``, ``wake``).

Redis is never the source of truth, so it may be down, flushed or written
by someone else at any time:
- Every method swallows Redis errors: it logs once at warning when Redis
  becomes unreachable (then at debug until it answers again) and returns
  ``None``/``False``/``[]``. Sockets time out after ``timeout`` seconds and
  nothing is retried, so an outage costs a caller at most that long.
- Values are signed: ``v1.<hex HMAC-SHA256>.<JSON>``, the MAC covering the
  Redis key and the JSON (a value copied to another key fails), and the JSON
  carrying when it was written (a status older than ``ttl`` plus a clock-skew
  allowance is refused, which bounds replays). Unsigned, mis-signed, expired
  or malformed values read as missing. The default key is derived from the
  URL, which only guards against foreign writers that do not know the URL;
  pass ``secret`` for protection against anyone who can write to Redis.
- Wake-ups are plain pub/sub messages (unsigned: a forged one only causes an
  extra, idempotent reconcile). ``listen_wake`` keeps its subscription
  between calls so wakes sent in between are not lost, and folds a burst
  into one.

The client is thread-safe except ``listen_wake``, which one thread owns.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from llmops.engine.redact import redact

log = logging.getLogger(__name__)

FORMAT = b"v1"
STREAM_MAXLEN = 10_000
CLOCK_SKEW_SECONDS = 30.0
WAKE_MESSAGE = b"wake"
BURST_SECONDS = 0.05

T = TypeVar("T")


class StatusCache:
    """Signed environment status, a capped stream of run events and a wake-up channel."""

    def __init__(self, url: str, *, prefix: str = "llmops", ttl: float = 300.0,
                 secret: bytes | None = None, timeout: float = 0.5) -> None:
        """Connects lazily (nothing is sent here); a malformed URL raises ``ValueError``.

        ``ttl`` is how long a status is kept and trusted; ``timeout`` bounds
        every connect and socket read (except the wait in ``listen_wake``).
        """
        if ttl <= 0:
            raise ValueError(f"cache ttl must be positive, got {ttl}")
        self.prefix = prefix
        self.ttl = ttl
        self.display_url = redact(url)
        self._secret = secret if secret else hashlib.sha256(
            b"llmops-status-cache\0" + url.encode()).digest()
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0))
        self._pubsub: PubSub | None = None
        self._failing = False
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------------ keys

    def environment_key(self, env: str) -> str:
        return f"{self.prefix}:env:{env}"

    @property
    def runs_key(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def wake_channel(self) -> str:
        return f"{self.prefix}:wake"

    # ------------------------------------------------------------------ status

    def put_environment(self, env: str, data: Mapping[str, Any]) -> bool:
        """Store ``data`` (JSON-serialisable) for ``env`` for ``ttl`` seconds."""
        key = self.environment_key(env)
        value = self._seal(key, data)
        try:
            self._client.set(key, value, px=max(1, round(self.ttl * 1000)))
        except redis.RedisError as err:
            return self._failed("put_environment", err, False)
        return self._ok(True)

    def get_environment(self, env: str) -> dict[str, Any] | None:
        """The status last put for ``env``, or ``None`` if missing or not to be trusted."""
        key = self.environment_key(env)
        try:
            raw = self._client.get(key)
        except redis.RedisError as err:
            return self._failed("get_environment", err, None)
        self._ok(None)
        if raw is None:
            return None
        return self._open(key, raw, max_age=self.ttl + CLOCK_SKEW_SECONDS)

    # ------------------------------------------------------------------ run events

    def publish_run(self, event: Mapping[str, Any]) -> bool:
        """Append a finished run's event to the stream (capped near ``STREAM_MAXLEN``)."""
        value = self._seal(self.runs_key, event)
        try:
            self._client.xadd(self.runs_key, {"event": value}, maxlen=STREAM_MAXLEN,
                              approximate=True)
        except redis.RedisError as err:
            return self._failed("publish_run", err, False)
        return self._ok(True)

    def read_runs(self, after_id: str = "0-0",
                  count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` events with stream ids after ``after_id``, oldest first.

        Entries that fail verification are left out (and logged).
        """
        try:
            reply: Any = self._client.xread({self.runs_key: after_id}, count=max(1, count))
        except redis.RedisError as err:
            return self._failed("read_runs", err, [])
        self._ok(None)
        events: list[tuple[str, dict[str, Any]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                ident = _text(entry_id)
                raw = fields.get(b"event") if isinstance(fields, dict) else None
                event = None if raw is None else self._open(self.runs_key, raw, max_age=None)
                if event is None:
                    log.warning("status cache: run event %s failed verification; skipped",
                                ident)
                    continue
                events.append((ident, event))
        return events

    # ------------------------------------------------------------------ wake-ups

    def wake(self) -> bool:
        """Ask the daemon(s) listening on this Redis to reconcile now."""
        try:
            self._client.publish(self.wake_channel, WAKE_MESSAGE)
        except redis.RedisError as err:
            return self._failed("wake", err, False)
        return self._ok(True)

    def listen_wake(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up; True when one came.

        On a Redis error it still waits out the timeout before returning
        False, so a loop that uses it as its sleep never spins.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            pubsub = self._subscription()
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                message = pubsub.get_message(ignore_subscribe_messages=True,
                                             timeout=remaining)
                if message is not None and message.get("type") == "message":
                    self._fold_burst(pubsub)
                    return self._ok(True)
                if remaining <= 0:
                    return self._ok(False)
        except (redis.RedisError, OSError) as err:
            self._drop_subscription()
            self._failed("listen_wake", err, False)
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    @staticmethod
    def _fold_burst(pubsub: PubSub) -> None:
        """Consume wake-ups that arrive right behind the first (a burst is one wake-up)."""
        for _ in range(1000):
            if pubsub.get_message(ignore_subscribe_messages=True,
                                  timeout=BURST_SECONDS) is None:
                return

    def _subscription(self) -> PubSub:
        if self._pubsub is None:
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self.wake_channel)
            except BaseException:
                pubsub.close()
                raise
            self._pubsub = pubsub
        return self._pubsub

    def _drop_subscription(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except (redis.RedisError, OSError) as err:
                log.debug("status cache: closing the wake subscription failed: %s", err)

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        """Whether Redis answers right now."""
        try:
            self._client.ping()
        except redis.RedisError as err:
            return self._failed("ping", err, False)
        return self._ok(True)

    def close(self) -> None:
        self._drop_subscription()
        self._client.close()

    def __enter__(self) -> StatusCache:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StatusCache({self.display_url!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ signing

    def _mac(self, key: str, payload: bytes) -> bytes:
        mac = hmac.new(self._secret, key.encode() + b"\n" + payload, hashlib.sha256)
        return mac.hexdigest().encode()

    def _seal(self, key: str, data: Mapping[str, Any]) -> bytes:
        """``v1.<mac>.<json>``; raises ``TypeError`` for values JSON cannot hold."""
        payload = orjson.dumps({"at": time.time(), "data": dict(data)})
        return b".".join((FORMAT, self._mac(key, payload), payload))

    def _open(self, key: str, raw: Any, *, max_age: float | None) -> dict[str, Any] | None:
        if not isinstance(raw, bytes):
            return None
        parts = raw.split(b".", 2)
        if len(parts) != 3 or parts[0] != FORMAT:
            log.warning("status cache: %s holds an unsigned value; ignored", key)
            return None
        _version, mac, payload = parts
        if not hmac.compare_digest(mac, self._mac(key, payload)):
            log.warning("status cache: %s failed its signature check; ignored", key)
            return None
        try:
            envelope = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
            return None
        written = envelope.get("at")
        if max_age is not None and (
                not isinstance(written, int | float) or time.time() - written > max_age):
            log.warning("status cache: %s is older than %.0f s; ignored", key, max_age)
            return None
        data: dict[str, Any] = envelope["data"]
        return data

    # ------------------------------------------------------------------ errors

    def _failed(self, operation: str, err: BaseException, result: T) -> T:
        with self._state_lock:
            first, self._failing = not self._failing, True
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "status cache %s: %s failed (continuing without Redis): %s",
                self.display_url, operation, err)
        return result

    def _ok(self, result: T) -> T:
        if self._failing:
            with self._state_lock:
                recovered, self._failing = self._failing, False
            if recovered:
                log.info("status cache %s: Redis answers again", self.display_url)
        return result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
