"""Per-tenant token-bucket rate limiting (no database)."""

from __future__ import annotations

import time

import pytest

from onevault.ingest import ratelimit
from onevault.ingest.ratelimit import RateLimiter

A = b"tenant-a"
B = b"tenant-b"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        """Current fake time."""
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Replace the limiter's clock with a hand-driven one."""
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


def test_burst_then_refusal_with_positive_wait(clock: FakeClock) -> None:
    """Up to `burst` events pass at once; the next is refused with the time until a token is back."""
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.acquire(A) for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire(A)
    assert wait == pytest.approx(0.1)
    assert limiter.acquire(A) == pytest.approx(0.1)


def test_refill_over_time(clock: FakeClock) -> None:
    """Tokens come back at `rate` per second, never above `burst`."""
    limiter = RateLimiter(rate=10, burst=5)
    for _ in range(5):
        limiter.acquire(A)
    clock.now += 0.25
    assert limiter.acquire(A) == 0.0
    assert limiter.acquire(A) == 0.0
    assert limiter.acquire(A) > 0
    clock.now += 3600
    assert [limiter.acquire(A) for _ in range(5)] == [0.0] * 5
    assert limiter.acquire(A) > 0


def test_refill_with_real_clock() -> None:
    """With the real clock, a refused tenant is allowed again after waiting the announced time."""
    limiter = RateLimiter(rate=50, burst=2)
    assert limiter.acquire(A) == 0.0
    assert limiter.acquire(A) == 0.0
    wait = limiter.acquire(A)
    assert 0 < wait <= 0.02 + 1e-9
    time.sleep(wait + 0.01)
    assert limiter.acquire(A) == 0.0


def test_tenants_are_independent(clock: FakeClock) -> None:
    """One tenant exhausting its bucket does not limit another."""
    limiter = RateLimiter(rate=1, burst=3)
    for _ in range(3):
        limiter.acquire(A)
    assert limiter.acquire(A) > 0
    assert [limiter.acquire(B) for _ in range(3)] == [0.0] * 3
    assert limiter.acquire(B) > 0


def test_rate_zero_disables_limiting(clock: FakeClock) -> None:
    """A rate of 0 lets everything through."""
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.acquire(A) == 0.0 for _ in range(1000))
    assert limiter.acquire(A, cost=10_000) == 0.0


def test_batch_larger_than_burst(clock: FakeClock) -> None:
    """A batch costing more than the burst passes when the bucket is full, and empties it."""
    limiter = RateLimiter(rate=10, burst=5)
    assert limiter.acquire(A, cost=50) == 0.0
    assert limiter.acquire(A) == pytest.approx(0.1)
    clock.now += 0.2
    wait = limiter.acquire(A, cost=50)
    assert wait == pytest.approx(0.3)
    clock.now += 0.3
    assert limiter.acquire(A, cost=50) == 0.0


def test_batch_cost_counts_every_event(clock: FakeClock) -> None:
    """A batch takes one token per event."""
    limiter = RateLimiter(rate=10, burst=5)
    assert limiter.acquire(A, cost=3) == 0.0
    assert limiter.acquire(A, cost=3) == pytest.approx(0.1)
    assert limiter.acquire(A, cost=2) == 0.0
    assert limiter.acquire(A) > 0
