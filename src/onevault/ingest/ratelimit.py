"""Per-tenant token-bucket rate limiting (per server process)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class RateLimiter:
    """Allows `rate` events per second per tenant with bursts up to `burst`; rate 0 disables it."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[bytes, _Bucket] = {}

    def acquire(self, tenant_hk: bytes, cost: int = 1) -> float:
        """Take `cost` tokens; return 0 when allowed, else the seconds to wait before retrying."""
        if self._rate <= 0:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.get(tenant_hk)
        if bucket is None:
            bucket = self._buckets[tenant_hk] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        # A batch larger than the burst is allowed once the bucket is full.
        amount = min(float(cost), self._burst)
        if bucket.tokens >= amount:
            bucket.tokens -= amount
            return 0.0
        return (amount - bucket.tokens) / self._rate
