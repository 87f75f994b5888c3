"""The concurrent circuit breaker, with a controlled clock."""

from __future__ import annotations

import threading
import time

import pytest

from stabilizer.wuzapi.breaker import ConcurrentCircuitBreaker
from stabilizer.wuzapi.errors import CircuitOpen, Throttled, UpstreamFailure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _failure() -> UpstreamFailure:
    return UpstreamFailure("refused", "refused", sent=False)


def _fail():
    raise _failure()


def _breaker(clock=None, fail_max=3, reset=30.0, successes=2) -> ConcurrentCircuitBreaker:
    return ConcurrentCircuitBreaker(fail_max=fail_max, reset_timeout=reset, success_threshold=successes,
                                    clock=clock or Clock())


def _trip(breaker, times):
    for _ in range(times):
        with pytest.raises(UpstreamFailure):
            breaker.call(_fail)


def test_opens_after_threshold_and_tripping_call_keeps_its_error():
    breaker = _breaker(fail_max=3)
    _trip(breaker, 2)
    assert breaker.current_state == "closed"
    with pytest.raises(UpstreamFailure):  # the third failure opens it but reports itself
        breaker.call(_fail)
    assert breaker.current_state == "open"
    with pytest.raises(CircuitOpen) as excinfo:
        breaker.call(lambda: "never runs")
    assert 29 < excinfo.value.retry_after <= 30


def test_answers_reset_failure_count():
    breaker = _breaker(fail_max=3)
    _trip(breaker, 2)
    breaker.call(lambda: "answer")
    _trip(breaker, 2)
    assert breaker.current_state == "closed"
    assert breaker.fail_counter == 2


def test_neutral_errors_leave_counters():
    breaker = _breaker(fail_max=2)
    _trip(breaker, 1)

    def throttled():
        raise Throttled(1.0)

    for _ in range(5):
        with pytest.raises(Throttled):
            breaker.call(throttled)
    for _ in range(5):
        with pytest.raises(KeyError):
            breaker.call(lambda: {}["missing"])
    assert breaker.fail_counter == 1
    assert breaker.current_state == "closed"


def test_seconds_until_trial_counts_down_without_traffic():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=30)
    _trip(breaker, 1)
    assert breaker.seconds_until_trial() == 30
    clock.now += 12.5
    assert breaker.seconds_until_trial() == 17.5
    clock.now += 100
    assert breaker.seconds_until_trial() == 0
    assert breaker.current_state == "open"  # half-open only when a call arrives


def test_half_open_admits_one_trial_at_a_time():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=30, successes=2)
    _trip(breaker, 1)
    clock.now += 30
    assert breaker.admit() is True
    assert breaker.current_state == "half-open"
    with pytest.raises(CircuitOpen):
        breaker.admit()
    breaker.record(True, None)
    assert breaker.current_state == "half-open"  # one of two successes
    assert breaker.admit() is True
    breaker.record(True, None)
    assert breaker.current_state == "closed"


def test_trial_failure_reopens_for_full_period():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=30)
    _trip(breaker, 1)
    clock.now += 31
    with pytest.raises(UpstreamFailure):
        breaker.call(_fail)
    assert breaker.current_state == "open"
    assert breaker.seconds_until_trial() == 30


def test_trial_released_by_neutral_error():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=30)
    _trip(breaker, 1)
    clock.now += 31

    def throttled():
        raise Throttled(None)

    with pytest.raises(Throttled):
        breaker.call(throttled)
    assert breaker.admit() is True  # the lease was given back


def test_success_threshold_boundaries():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=1, successes=3)
    _trip(breaker, 1)
    clock.now += 1
    for expected in ("half-open", "half-open", "closed"):
        breaker.call(lambda: "ok")
        assert breaker.current_state == expected


def test_transitions_recorded():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=1, successes=1)
    _trip(breaker, 1)
    clock.now += 1
    breaker.call(lambda: "ok")
    moves = [(item["from"], item["to"]) for item in breaker.snapshot()["transitions"]]
    assert moves == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_reset_closes():
    breaker = _breaker(fail_max=1)
    _trip(breaker, 1)
    breaker.reset()
    assert breaker.snapshot()["state"] == "closed"
    assert breaker.fail_counter == 0


def test_calls_run_concurrently():
    """Eight 0.2 s calls through one breaker overlap instead of queueing on its lock."""
    breaker = _breaker()
    barrier_hits = []

    def slow():
        barrier_hits.append(time.monotonic())
        time.sleep(0.2)
        return "ok"

    threads = [threading.Thread(target=breaker.call, args=(slow,)) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    elapsed = time.monotonic() - started
    assert len(barrier_hits) == 8
    assert elapsed < 1.0  # serialised, they would take 1.6 s


def test_half_open_others_fail_fast_while_trial_runs():
    clock = Clock()
    breaker = _breaker(clock, fail_max=1, reset=1)
    _trip(breaker, 1)
    clock.now += 1
    release = threading.Event()
    trial = threading.Thread(target=breaker.call, args=(lambda: release.wait(5),))
    trial.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "second")
    assert time.monotonic() - started < 0.05
    release.set()
    trial.join(5)
