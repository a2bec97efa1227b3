"""The simulator's faults and delays: fault specs, scripted queues, random rates and mixes.

Rule 1: no I/O, no clock and no event loop: this module decides *which* fault or delay an answer
gets; the HTTP layer carries it out.
Rule 2: a scripted fault for a key is served before any random one, in the order it was queued.
Rule 3: every random draw comes from a generator seeded from the simulator's seed, so the same
seed and the same sequence of requests get the same faults and delays.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "CENTER_FAULT_KEY",
    "DEFAULT_FAULT_MIX",
    "FAULT_KINDS",
    "LIST_FAULT_KEY",
    "TOKENS_FAULT_KEY",
    "Fault",
    "FaultPlan",
    "Latency",
    "format_fault",
    "latency_range",
    "parse_fault",
]

# Scripted faults for the list endpoint are queued under this key instead of an instance id
# (or under "list:<start>" for one page only);
# the token endpoints (both logins and renewal) under "tokens", the center under "center".
LIST_FAULT_KEY = "list"
TOKENS_FAULT_KEY = "tokens"
CENTER_FAULT_KEY = "center"

FAULT_KINDS: tuple[str, ...] = (
    "http_500",
    "http_502",
    "http_503",
    "http_429",
    "code_10001",
    "code_10012",
    "truncated",
    "html",
    "slow",
    "reset",
    "hang",
)
# Random faults leave out the two that cost a client its whole timeout, unless asked for.
DEFAULT_FAULT_MIX: tuple[str, ...] = tuple(k for k in FAULT_KINDS if k not in ("slow", "hang"))
_FAULTS_WITH_ARGUMENT = frozenset({"slow", "http_429"})

Fault = tuple[str, float | None]


def parse_fault(spec: str) -> Fault:
    """A fault spec such as ``"http_503"``, ``"slow:0.2"`` or ``"http_429:5"`` as (kind, arg)."""
    kind, sep, arg = spec.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {spec!r}; expected one of {', '.join(FAULT_KINDS)}")
    if not sep:
        return kind, None
    if kind not in _FAULTS_WITH_ARGUMENT:
        raise ValueError(f"fault kind {kind!r} takes no argument")
    value = float(arg)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"fault argument must be a non-negative number, got {arg!r}")
    return kind, value


def format_fault(fault: Fault) -> str:
    """The spec string of a parsed fault, the inverse of :func:`parse_fault`."""
    kind, arg = fault
    return kind if arg is None else f"{kind}:{arg:g}"


def latency_range(latency: float | Sequence[float]) -> tuple[float, float]:
    """A fixed delay or a ``(low, high)`` pair as a checked (low, high) range in seconds."""
    if isinstance(latency, (int, float)):
        low = high = float(latency)
    else:
        low, high = (float(v) for v in latency)
    if not (0 <= low <= high and math.isfinite(high)):
        raise ValueError(f"latency must be seconds >= 0 or a (low, high) range, got {latency!r}")
    return low, high


class FaultPlan:
    """Which request gets which fault: scripted queues per key first, then a random rate."""

    def __init__(
        self,
        *,
        seed: int,
        rate: float = 0.0,
        kinds: Sequence[str] | Mapping[str, float] = DEFAULT_FAULT_MIX,
    ) -> None:
        self._rng = random.Random(f"{seed}:faults")
        self._scripted: dict[str, deque[Fault]] = {}
        self._rate = 0.0
        self._mix: list[Fault] = []
        self._weights: list[float] = []
        self.set_rate(rate, kinds=kinds)

    def script(self, key: str, faults: Iterable[str]) -> None:
        """Queue faults for the next requests about ``key`` (an instance id or ``"list"``)."""
        # Any key is accepted: an id the simulator does not know can be faulted too.
        parsed = [parse_fault(spec) for spec in faults]
        if parsed:
            self._scripted.setdefault(key, deque()).extend(parsed)

    def pending(self, key: str) -> list[str]:
        """Scripted faults not yet served for ``key``."""
        return [format_fault(fault) for fault in self._scripted.get(key, ())]

    def clear(self, key: str | None = None) -> None:
        """Drop scripted faults for ``key``, or for every key."""
        if key is None:
            self._scripted.clear()
        else:
            self._scripted.pop(key, None)

    def set_rate(
        self, rate: float, *, kinds: Sequence[str] | Mapping[str, float] | None = None
    ) -> None:
        """Fault each request with probability ``rate``, kinds drawn from a weighted mix."""
        if not 0 <= rate <= 1:
            raise ValueError("fault rate must be within [0, 1]")
        if kinds is not None:
            weighted = kinds.items() if isinstance(kinds, Mapping) else ((k, 1.0) for k in kinds)
            pairs = [(parse_fault(spec), float(weight)) for spec, weight in weighted]
            if not pairs or any(w < 0 for _, w in pairs) or sum(w for _, w in pairs) <= 0:
                raise ValueError("the fault mix needs at least one kind with a positive weight")
            self._mix = [fault for fault, _ in pairs]
            self._weights = [weight for _, weight in pairs]
        self._rate = float(rate)

    @property
    def rate(self) -> float:
        """Probability that a faultable request is faulted when nothing is scripted for it."""
        return self._rate

    @property
    def kinds(self) -> dict[str, float]:
        """The mix random faults are drawn from, spec -> weight."""
        pairs = zip(self._mix, self._weights, strict=True)
        return {format_fault(fault): weight for fault, weight in pairs}

    def take(self, *keys: str, scripted_only: bool = False) -> Fault | None:
        """The fault for the next request about ``keys``, or None to answer normally.

        The first key with a queued fault serves it (a list page is asked about as
        ``"list:<start>"`` and then ``"list"``); otherwise a random fault at the plan's rate,
        unless ``scripted_only`` (endpoints the random rate never hits).
        """
        for key in keys:
            queue = self._scripted.get(key)
            if queue:
                fault = queue.popleft()
                if not queue:
                    del self._scripted[key]
                return fault
        if not scripted_only and self._rate and self._rng.random() < self._rate:
            return self._rng.choices(self._mix, weights=self._weights)[0]
        return None


class Latency:
    """Delays drawn for answers: every answer's, and a ``slow`` fault's when it names none."""

    def __init__(
        self, *, seed: int, every: float | Sequence[float], slow: float | Sequence[float]
    ) -> None:
        self._rng = random.Random(f"{seed}:latency")
        self.every = latency_range(every)
        self.slow = latency_range(slow)

    def set(self, latency: float | Sequence[float]) -> None:
        """Delay every answer by ``latency`` seconds, or uniformly within (low, high)."""
        self.every = latency_range(latency)

    def draw(self) -> float:
        """Seconds to hold the next answer back (0 when no latency is set)."""
        return self._draw(self.every)

    def draw_slow(self, fault: Fault) -> float:
        """Seconds a ``slow`` fault holds its answer back."""
        return fault[1] if fault[1] is not None else self._draw(self.slow)

    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._rng.uniform(low, high)
