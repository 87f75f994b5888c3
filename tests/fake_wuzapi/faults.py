"""Fault rules: which requests the fake breaks, and how.

A rule hits each request whose path matches one of its fnmatch `paths` (all paths when
unset) with probability `rate`. Modes, with `latency_ms` defaults in brackets:

- latency [1000]: wait latency_ms, then process and reply normally.
- reset: read the request, then close with SO_LINGER 0 (TCP RST) and send nothing.
- close: read the request, then close cleanly (FIN) and send nothing.
- blackhole: read the request and send nothing until the client leaves or the server stops.
- proxy_502: reply 502 text/html like nginx.
- status_429: reply 429 text/html with Retry-After set to `retry_after`.
- error_500: reply WUZAPI's 500 envelope with error "no session".
- stall_body [60000]: process, send head and the first half of the body, wait latency_ms,
  then send the rest.
- trickle [2000]: process, send the head, then one body byte every latency_ms / len(body)
  ms, so the body takes about latency_ms in total.

Modes that reply without the normal response leave user state untouched. With
`after_processing`, reset, close and blackhole process the request before dropping it.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

MODES = (
    "ok",
    "latency",
    "reset",
    "close",
    "proxy_502",
    "error_500",
    "blackhole",
    "status_429",
    "stall_body",
    "trickle",
)

# Modes that may process the request before dropping the connection.
AFTER_PROCESSING_MODES = ("reset", "close", "blackhole")

# Default latency_ms per mode, used when a rule does not set it.
DEFAULT_LATENCY_MS = {"latency": 1000, "stall_body": 60000, "trickle": 2000}

RULE_KEYS = ("mode", "rate", "latency_ms", "retry_after", "paths", "seed", "after_processing")


@dataclass
class FaultRule:
    """One validated fault rule, built by from_dict."""

    mode: str = "ok"
    rate: float = 1.0
    latency_ms: float = 0
    retry_after: str = "1"
    paths: tuple[str, ...] | None = None
    seed: int | str | None = None
    after_processing: bool = False
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, rule: dict[str, Any]) -> FaultRule:
        """Validate a rule given as JSON or keyword arguments, raising ValueError that names the bad field."""
        if not isinstance(rule, dict):
            raise ValueError("fault rule must be a JSON object")
        unknown = sorted(set(rule) - set(RULE_KEYS))
        if unknown:
            raise ValueError(f"unknown fault rule field(s) {unknown}: allowed fields are {list(RULE_KEYS)}")

        mode = rule.get("mode")
        if mode not in MODES:
            raise ValueError(f"invalid mode {mode!r}: expected one of {list(MODES)}")

        rate = rule.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"invalid rate {rate!r}: expected a number from 0 to 1")

        latency_ms = rule.get("latency_ms", DEFAULT_LATENCY_MS.get(mode, 0))
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) or latency_ms < 0:
            raise ValueError(f"invalid latency_ms {latency_ms!r}: expected milliseconds >= 0")

        retry_after = rule.get("retry_after", "1")
        if isinstance(retry_after, bool) or not isinstance(retry_after, (str, int)):
            raise ValueError(f"invalid retry_after {retry_after!r}: expected a header value string")

        paths = rule.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if paths is not None and (
            not isinstance(paths, list) or not all(isinstance(glob, str) for glob in paths)
        ):
            raise ValueError(f"invalid paths {paths!r}: expected a list of glob strings")

        seed = rule.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, (int, str, type(None))):
            raise ValueError(f"invalid seed {seed!r}: expected an integer or a string")

        after_processing = rule.get("after_processing", False)
        if not isinstance(after_processing, bool):
            raise ValueError(f"invalid after_processing {after_processing!r}: expected true or false")
        if after_processing and mode not in AFTER_PROCESSING_MODES:
            raise ValueError(
                f"after_processing is only valid for modes {list(AFTER_PROCESSING_MODES)}, not {mode!r}"
            )

        return cls(
            mode=mode,
            rate=float(rate),
            latency_ms=latency_ms,
            retry_after=str(retry_after),
            paths=tuple(paths) if paths is not None else None,
            seed=seed,
            after_processing=after_processing,
            rng=random.Random(seed),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "after_processing": self.after_processing,
            "latency_ms": self.latency_ms,
            "mode": self.mode,
            "paths": list(self.paths) if self.paths is not None else None,
            "rate": self.rate,
            "retry_after": self.retry_after,
            "seed": self.seed,
        }

    def matches(self, path: str) -> bool:
        if self.paths is None:
            return True
        return any(fnmatch.fnmatchcase(path, glob) for glob in self.paths)


class FaultController:
    """The current fault rule and the seeded draws that pick which requests it hits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rule = FaultRule()

    def set(self, rule: dict[str, Any]) -> FaultRule:
        """Replace the current rule (mode "ok" clears it). Raises ValueError for an invalid rule."""
        parsed = FaultRule.from_dict(rule)
        with self._lock:
            self._rule = parsed
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._rule = FaultRule()

    def current(self) -> dict[str, Any]:
        with self._lock:
            return self._rule.to_dict()

    def decide(self, path: str) -> FaultRule | None:
        """Return the rule if it hits this request, else None.

        Each request whose path matches draws once from the rule's own random.Random, so a
        seeded rule hits the same sequence of matching requests on every run.
        """
        with self._lock:
            rule = self._rule
            if rule.mode == "ok" or not rule.matches(path):
                return None
            if rule.rng.random() < rule.rate:
                return rule
            return None
