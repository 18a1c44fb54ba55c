"""The Redis status cache: signed values, run stream, wake-ups, and Redis being down.

Against the real Redis on 127.0.0.1:6379 (``LLMOPS_TEST_REDIS_URL``); every
test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from conftest import REDIS_URL
from llmops.engine.store import cache

# Slow tier: every test runs against the local Redis.
pytestmark = pytest.mark.slow

DOWN_URL = "redis://127.0.0.1:1/0"

STATUS = {"environment": "prod", "revision": "a" * 40, "ready": True,
          "conditions": [{"type": "Ready", "status": "True", "reason": "Applied"}],
          "counts": {"created": 2, "unchanged": 40}, "note": "Grüße"}




@pytest.fixture
def make_cache(prefix: str) -> Iterator[Callable[..., cache.StatusCache]]:
    opened: list[cache.StatusCache] = []

    def make(url: str = REDIS_URL, **options: object) -> cache.StatusCache:
        options.setdefault("prefix", prefix)
        made = cache.StatusCache(url, **options)  # type: ignore[arg-type]
        opened.append(made)
        return made

    yield make
    for made in opened:
        made.close()


# --------------------------------------------------------------------------- status


def test_environment_status_round_trips_and_expires_with_the_ttl(
        make_cache: Callable[..., cache.StatusCache], raw: redis.Redis) -> None:
    writer, reader = make_cache(ttl=60), make_cache(ttl=60)
    assert reader.get_environment("prod") is None

    assert writer.put_environment("prod", STATUS)
    assert reader.get_environment("prod") == STATUS
    assert 0 < raw.pttl(writer.environment_key("prod")) <= 60_000
    assert reader.get_environment("stg") is None


def test_tampered_values_read_as_missing(make_cache: Callable[..., cache.StatusCache],
                                         raw: redis.Redis) -> None:
    status = make_cache()
    assert status.put_environment("prod", STATUS)
    assert status.put_environment("dev", {"ready": False})
    key = status.environment_key("prod")
    signed = raw.get(key)
    assert isinstance(signed, bytes)

    raw.set(key, b'{"environment": "prod", "ready": true}')  # other JSON, unsigned
    assert status.get_environment("prod") is None

    flipped = bytearray(signed)
    flipped[-3] ^= 0x01  # one bit inside the JSON
    raw.set(key, bytes(flipped))
    assert status.get_environment("prod") is None

    raw.set(key, raw.get(status.environment_key("dev")) or b"")  # dev's status under prod
    assert status.get_environment("prod") is None

    raw.set(key, b"v1.0000.not json")
    assert status.get_environment("prod") is None

    raw.set(key, signed)
    assert status.get_environment("prod") == STATUS


def test_a_value_signed_with_another_secret_is_refused(
        make_cache: Callable[..., cache.StatusCache]) -> None:
    ours = make_cache(secret=b"ours")
    theirs = make_cache(secret=b"theirs")
    assert theirs.put_environment("prod", STATUS)
    assert ours.get_environment("prod") is None
    assert ours.put_environment("prod", STATUS)
    assert ours.get_environment("prod") == STATUS


def test_a_replayed_old_value_is_refused(make_cache: Callable[..., cache.StatusCache],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "CLOCK_SKEW_SECONDS", 0.0)
    writer, reader = make_cache(ttl=60), make_cache(ttl=0.2)
    assert writer.put_environment("prod", STATUS)
    time.sleep(0.3)
    assert reader.get_environment("prod") is None
    assert writer.get_environment("prod") == STATUS


def test_values_json_cannot_hold_are_a_caller_error(
        make_cache: Callable[..., cache.StatusCache]) -> None:
    with pytest.raises(TypeError):
        make_cache().put_environment("prod", {"when": object()})


# --------------------------------------------------------------------------- run stream


def test_run_events_are_read_back_in_order_after_an_id(
        make_cache: Callable[..., cache.StatusCache], raw: redis.Redis) -> None:
    daemon, api = make_cache(), make_cache()
    assert api.read_runs() == []
    for number in range(3):
        assert daemon.publish_run({"environment": "prod", "run": number, "result": "succeeded"})

    events = api.read_runs()
    assert [event["run"] for _id, event in events] == [0, 1, 2]
    first_id = events[0][0]
    assert [event["run"] for _id, event in api.read_runs(after_id=first_id)] == [1, 2]
    assert len(api.read_runs(count=1)) == 1
    assert api.read_runs(after_id=events[-1][0]) == []

    raw.xadd(api.runs_key, {"event": b'{"run": 99}'})  # forged, unsigned
    daemon.publish_run({"environment": "prod", "run": 3})
    assert [event["run"] for _id, event in api.read_runs(after_id=events[-1][0])] == [3]


def test_run_stream_is_capped(make_cache: Callable[..., cache.StatusCache], raw: redis.Redis,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "STREAM_MAXLEN", 10)
    daemon = make_cache()
    for number in range(600):
        daemon.publish_run({"run": number})
    assert raw.xlen(daemon.runs_key) < 300  # trimmed (approximately, by whole nodes)


# --------------------------------------------------------------------------- wake-ups


def test_wake_reaches_a_listener_on_another_client(
        make_cache: Callable[..., cache.StatusCache], raw: redis.Redis) -> None:
    daemon, api = make_cache(), make_cache()
    woken: list[bool] = []
    listener = threading.Thread(target=lambda: woken.append(daemon.listen_wake(10)))
    started = time.monotonic()
    listener.start()
    _wait_for_subscriber(raw, daemon.wake_channel)

    assert api.wake()
    listener.join(timeout=10)
    assert woken == [True]
    assert time.monotonic() - started < 5


def test_listen_wake_times_out_keeps_wakes_between_calls_and_folds_bursts(
        make_cache: Callable[..., cache.StatusCache]) -> None:
    daemon, api = make_cache(), make_cache()
    started = time.monotonic()
    assert not daemon.listen_wake(0.2)
    assert 0.15 <= time.monotonic() - started < 2

    for _ in range(3):  # sent while nobody is waiting in listen_wake
        assert api.wake()
    assert daemon.listen_wake(2)
    assert not daemon.listen_wake(0.2), "a burst of wake-ups is one wake-up"


def test_listen_wake_recovers_when_its_connection_is_killed(
        make_cache: Callable[..., cache.StatusCache], raw: redis.Redis) -> None:
    name = f"llmops-test-{secrets.token_hex(4)}"
    daemon, api = make_cache(f"{REDIS_URL}?client_name={name}"), make_cache()
    assert not daemon.listen_wake(0.05)  # subscribed now
    _wait_for_subscriber(raw, daemon.wake_channel)
    ours = [c["id"] for c in raw.client_list(_type="pubsub") if c.get("name") == name]
    assert len(ours) == 1
    raw.client_kill_filter(_id=ours[0])  # as when Redis restarts or a proxy drops it

    started = time.monotonic()
    assert not daemon.listen_wake(0.3)
    assert time.monotonic() - started >= 0.25, "an error still waits out the timeout"
    woken: list[bool] = []
    listener = threading.Thread(target=lambda: woken.append(daemon.listen_wake(10)))
    listener.start()
    _wait_for_subscriber(raw, daemon.wake_channel)
    assert api.wake()
    listener.join(timeout=10)
    assert woken == [True]


# --------------------------------------------------------------------------- Redis down


def test_redis_down_every_method_answers_quickly_and_raises_nothing(
        make_cache: Callable[..., cache.StatusCache], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=cache.__name__)
    down = make_cache(DOWN_URL, timeout=0.5)
    started = time.monotonic()

    assert down.put_environment("prod", STATUS) is False
    assert down.get_environment("prod") is None
    assert down.publish_run({"run": 1}) is False
    assert down.read_runs() == []
    assert down.wake() is False
    assert down.ping() is False
    assert down.listen_wake(0.2) is False
    assert time.monotonic() - started < 3

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per outage, not one per call"
    assert "127.0.0.1:1" in warnings[0].getMessage()


def test_a_password_in_the_url_never_reaches_the_logs(
        make_cache: Callable[..., cache.StatusCache], caplog: pytest.LogCaptureFixture) -> None:
    down = make_cache("redis://:hunter2@127.0.0.1:1/0")
    down.get_environment("prod")
    assert caplog.records
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(down)


# --------------------------------------------------------------------------- helpers


def _wait_for_subscriber(raw: redis.Redis, channel: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = dict(raw.pubsub_numsub(channel))
        if counts.get(channel.encode(), 0) >= 1:
            return
        time.sleep(0.02)
    pytest.fail(f"nobody subscribed to {channel} within {timeout} s")
