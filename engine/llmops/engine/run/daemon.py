"""The daemon: a small loop service around the reconciler.

``run_once()`` does one leader-guarded pass; ``run()`` repeats it every
interval (plus jitter), wakes at once on a trigger (``trigger()`` from the API
or a webhook, a Redis wake-up message, or a debounced file-system event in a
local specs repo) and stops cleanly on SIGTERM/SIGINT. Input: a reconciler
and an optional lease. Output: pass results, logs and metrics. Called by
``llmops daemon`` and ``llmops up``.

Only the leader acts: a daemon without the lease idles; one that loses it
mid-pass stops before its next write (the reconciler checks the lease before
acting) and goes back to waiting. Each acquisition takes a fencing token from
the store (``Store.next_fence``) and the pass writes under it
(``Store.fenced``): a leader that stalled between its check and a write, while
another took over, has that write refused (``FencedOut``) and stands by too.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from llmops.engine.errors import LlmopsError
from llmops.engine.run import reconciler
from llmops.engine.store.db import Fence, FencedOut, StoreUnavailable

log = logging.getLogger(__name__)


class Lease(Protocol):
    name: str
    """The lease's name: its fencing tokens are numbered per name."""

    def acquire(self) -> bool: ...
    def held(self) -> bool: ...
    def release(self) -> None: ...


def log_results(results: list[reconciler.PassResult]) -> None:
    """One log line per environment: INFO when it is fine, WARNING when it failed or was
    blocked (with the first line of the reason)."""
    for r in results:
        log.log(logging.INFO if r.ok else logging.WARNING, "%s: %s at %s%s", r.environment,
                r.result.value, r.revision[:12],
                f" ({r.reason}: {r.message.splitlines()[0]})" if not r.ok and r.message else "")


class Daemon:
    def __init__(self, rec: reconciler.Reconciler, *, lease: Lease | None = None,
                 interval: float = 60.0, jitter: float = 5.0,
                 watch: Path | None = None, debounce: float = 1.0,
                 wait_for_wake: Callable[[float], bool] | None = None,
                 on_leader: Callable[[bool], None] | None = None,
                 on_results: Callable[[list[reconciler.PassResult]], None] | None = None,
                 report: Callable[[list[reconciler.PassResult]], None] | None = None,
                 on_store: Callable[[bool], None] | None = None
                 ) -> None:
        self.rec = rec
        self.lease = lease
        self.interval = interval
        self.jitter = jitter
        self.watch = watch
        self.debounce = debounce
        self.wait_for_wake = wait_for_wake
        self.on_leader = on_leader or (lambda _leading: None)
        self.on_results = on_results or (lambda _results: None)
        self.report = report or log_results
        """Tells people about a pass's results (default: one log line each)."""
        self.on_store = on_store or (lambda _up: None)
        self.store_available: bool | None = None
        """False after a pass the store failed (it acted on nothing); True after one it
        answered; None before the first pass. The recorded state is kept either way."""
        self.leading = lease is None
        self.fence: Fence | None = None
        """The fencing token of the current acquisition (None without a lease)."""
        self.passes = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        if lease is not None:
            rec.lease_check = self._still_leader

    # ------------------------------------------------------------------ control

    def trigger(self) -> None:
        """Wake the loop now (a webhook, the API, a file change)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ one pass

    def _still_leader(self) -> bool:
        ok = self.lease is None or self.lease.held()
        if not ok:
            self._stand_by("leader lease lost")
        return ok

    def _stand_by(self, why: str) -> None:
        if self.leading:
            log.warning("%s; standing by", why)
            self.leading = False
            self.on_leader(False)

    def _acquire(self) -> bool:
        """Try to take the lease, and with it the next fencing token of its name."""
        assert self.lease is not None
        if not self.lease.acquire():
            return False
        try:
            self.fence = self.rec.store.next_fence(self.lease.name)
        except StoreUnavailable as exc:
            log.error("store unavailable, no fencing token: not leading: %s", exc)
            self.lease.release()
            self._store_is(False)
            return False
        log.info("leader lease acquired (epoch %d)", self.fence.epoch)
        self.leading = True
        self.on_leader(True)
        return True

    def run_once(self) -> list[reconciler.PassResult] | None:
        """One pass if this daemon leads (None when it does not); never raises for the
        store or source being down: that is logged and retried on the next tick."""
        if self.lease is not None:
            if self.leading:
                if not self._still_leader():
                    return None
            elif not self._acquire():
                return None
        start = time.perf_counter()
        try:
            with nullcontext() if self.fence is None else self.rec.store.fenced(self.fence):
                results = self.rec.run_once()
        except reconciler.LeaseLost:
            return None
        except FencedOut as exc:
            assert self.lease is not None
            self.lease.release()
            self._stand_by(f"leader lease lost to a newer leader ({exc.message})")
            return None
        except StoreUnavailable as exc:
            log.error("store unavailable, nothing applied: %s", exc)
            self._store_is(False)
            return None
        except LlmopsError as exc:
            log.error("reconcile failed: %s", exc)
            return None
        finally:
            self.passes += 1
        self._store_is(True)
        self.rec.metrics.pass_duration(time.perf_counter() - start)
        self.on_results(results)
        self.report(results)
        return results

    def _store_is(self, up: bool) -> None:
        if up and self.store_available is False:
            log.warning("store available again")
        self.store_available = up
        self.on_store(up)

    # ------------------------------------------------------------------ the loop

    def _next_delay(self) -> float:
        return self.interval + random.uniform(0, self.jitter)

    def run(self, *, install_signals: bool = True) -> None:
        """Loop until ``stop()`` or SIGTERM/SIGINT; then release the lease."""
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        observer = self._start_watch()
        waker = self._start_wake_listener()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                self.run_once()
                self._wake.wait(self._next_delay())
                if self._wake.is_set() and not self._stop.is_set():
                    # Debounce: let a burst of events (a checkout, a push) settle.
                    self._stop.wait(self.debounce)
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
            if waker is not None:
                waker.join(timeout=5)
            self.release()
            log.info("daemon stopped")

    def release(self) -> None:
        """Give the lease up (at shutdown, or after a single pass)."""
        if self.lease is not None and self.leading:
            self.lease.release()
            self.leading = False
            self.on_leader(False)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the current pass", signal.Signals(signum).name)
        self.stop()

    def _start_watch(self) -> Any:
        if self.watch is None:
            return None
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        daemon = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                daemon.trigger()

        observer = Observer()
        observer.schedule(Handler(), str(self.watch), recursive=True)
        observer.daemon = True
        observer.start()
        return observer

    def _start_wake_listener(self) -> threading.Thread | None:
        if self.wait_for_wake is None:
            return None
        wait = self.wait_for_wake

        def listen() -> None:
            while not self._stop.is_set():
                if wait(1.0):
                    self.trigger()

        thread = threading.Thread(target=listen, name="llmops-wake", daemon=True)
        thread.start()
        return thread
