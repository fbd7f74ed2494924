"""A circuit breaker per endpoint (base URL + model name), shared by every call of one executor.

Why: a server that went away answers every request of a fan-out with a connection error within
milliseconds, and a model that always answers HTTP 500 costs every call its retries before the
working model is tried. The breaker remembers that across calls:

- **closed** (normal): requests go out. Each connection error or server error (5xx, a gateway's
  reply without choices, a non-JSON body) adds one to a count of consecutive failures; any reply
  that proves the server is up (a success, a 4xx, an unusable but complete reply) resets it.
  Timeouts and 429s count for neither: a slow or rate-limited server is not a missing one.
- **open**: after ``failures`` consecutive failures, requests to the endpoint are not sent for a
  cool-down (``cooldown`` seconds, doubled each time a probe fails, at most ``max_cooldown``). The
  executor records each call it does not send as an ``llm_interactions`` row with status
  ``skipped`` and error code ``circuit_open`` (no duration, no tokens, not counted as an attempt)
  and moves on to the next model, or fails the call as ``transient`` when none is left.
- **half-open**: once the cool-down is over, one request (the probe) goes out while the others are
  still skipped; its outcome closes the breaker or opens it again.

Everything is in memory, per executor (one per model choice and process): a new process starts
with every breaker closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerState:
    """What a skipped call records: why the endpoint is considered down and until when."""

    key: str
    failures: int
    last_error: str
    retry_in: float  # seconds until the next probe may go out

    def describe(self) -> str:
        return (
            f"not sent: the endpoint failed {self.failures} time{'s' if self.failures != 1 else ''} in a row "
            f"(last: {self.last_error}); the next probe goes out in {self.retry_in:.0f}s"
        )


class CircuitBreaker:
    def __init__(
        self,
        key: str,
        failures: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if failures < 1:
            raise ValueError("a breaker needs failures >= 1")
        self.key = key
        self.threshold = failures
        self.base_cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._last_error = ""
        self._open_until: float | None = None  # None: closed
        self._cooldown = cooldown
        self._probing = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None

    def admit(self) -> tuple[bool, BreakerState | None]:
        """Before a request: (True, None) to send it, (True, state) to send it as the half-open probe,
        (False, state) to skip it. The probe's outcome must be reported (``success``/``failure``/
        ``neutral``), or the endpoint stays half-open with its probe slot taken."""
        with self._lock:
            if self._open_until is None:
                return True, None
            now = self._clock()
            state = BreakerState(
                self.key, self._consecutive, self._last_error, max(0.0, self._open_until - now)
            )
            if now < self._open_until or self._probing:
                return False, state
            self._probing = True
            return True, state

    def peek(self) -> BreakerState | None:
        """The state if a request now would be skipped (open, cool-down not over), else None. Takes
        no probe slot: ``admit`` decides, right before the request is sent."""
        with self._lock:
            if self._open_until is None:
                return None
            now = self._clock()
            if now >= self._open_until and not self._probing:
                return None
            return BreakerState(
                self.key, self._consecutive, self._last_error, max(0.0, self._open_until - now)
            )

    def success(self) -> None:
        """The endpoint answered: close the breaker."""
        with self._lock:
            self._consecutive = 0
            self._open_until = None
            self._cooldown = self.base_cooldown
            self._probing = False

    def failure(self, error: str, probe: bool = False) -> bool:
        """A connection or server error. True when this failure opened (or re-opened) the breaker."""
        with self._lock:
            self._consecutive += 1
            self._last_error = error
            if self._open_until is not None:
                if not probe:
                    return False  # a request sent before the breaker opened: it is open already
                # The half-open probe failed: open again, for longer.
                self._probing = False
                self._cooldown = min(self.max_cooldown, self._cooldown * 2)
                self._open_until = self._clock() + self._cooldown
                return True
            if self._consecutive >= self.threshold:
                self._cooldown = self.base_cooldown
                self._open_until = self._clock() + self._cooldown
                return True
            return False

    def neutral(self, probe: bool = False) -> None:
        """An outcome that says nothing about the endpoint's health (a timeout, a 429, a stop)."""
        if probe:
            with self._lock:
                self._probing = False


class BreakerBoard:
    """The breakers of one executor, one per endpoint key, created on first use."""

    def __init__(
        self, failures: int, cooldown: float, max_cooldown: float, clock: Callable[[], float] = time.monotonic
    ):
        self.failures = failures
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(key, self.failures, self.cooldown, self.max_cooldown, self._clock)
                self._breakers[key] = breaker
            return breaker
