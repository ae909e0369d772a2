"""Realistic site-tracking events for the benchmarks, and bulk loading them into the raw layer."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from onevault import sqlfile

INGEST = sqlfile.load("onevault.ingest", "queries.sql")["ingest_events"]

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
)
BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PAGES = 200
VISITORS = 5000
BOT_SHARE = 0.03  # of sessions
MALFORMED_SHARE = 0.01  # of events: page_url 'not a url', quarantined by the pipeline
NO_SESSION_SHARE = 0.1  # of sessions whose client sends no session id (the pipeline derives one)
UTM = (
    None,
    None,
    "utm_source=google&utm_medium=cpc&utm_campaign=spring%20sale",
    "utm_source=newsletter&utm_medium=email&utm_campaign=may-2024&utm_content=hero",
    "utm_source=facebook&utm_medium=social&utm_campaign=launch&utm_term=tracking+tool",
)
REFERRERS = (
    None,
    None,
    "https://www.google.com/search?q=site+tracking",
    "https://news.ycombinator.com/item?id=1",
    "https://shop.example.com/",
)
EVENT_TYPES = ("page_view",) * 15 + ("click",) * 3 + ("scroll", "add_to_cart")


@dataclass
class _Session:
    session_id: str | None
    visitor: int
    remaining: int
    bot: bool


@dataclass
class EventStream:
    """A deterministic stream of events: sessions of ~5 events by ~5,000 visitors on ~200 pages."""

    prefix: str
    seed: int = 1
    malformed: int = 0
    _rng: random.Random = field(init=False)
    _active: list[_Session] = field(default_factory=list)
    _sessions: int = 0
    _events: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _session(self) -> _Session:
        rng = self._rng
        if not self._active or rng.random() < 0.2 or len(self._active) < 50:
            self._sessions += 1
            bot = rng.random() < BOT_SHARE
            sid = None if rng.random() < NO_SESSION_SHARE else f"{self.prefix}-s{self._sessions}"
            self._active.append(_Session(sid, rng.randrange(VISITORS), rng.randint(1, 9), bot))
        index = rng.randrange(len(self._active))
        session = self._active[index]
        session.remaining -= 1
        if session.remaining <= 0:
            self._active[index] = self._active[-1]
            self._active.pop()
        return session

    def next(self, received: datetime) -> tuple[str, dict[str, Any], str]:
        """The next event: its event_id, payload (as a client sends it) and user agent."""
        rng = self._rng
        self._events += 1
        session = self._session()
        event_id = f"{self.prefix}-{self._events}"
        page = int(rng.paretovariate(1.2)) % PAGES
        utm = rng.choice(UTM)
        url = f"https://shop.example.com/products/item-{page}" + (f"?{utm}" if utm else "")
        if rng.random() < MALFORMED_SHARE:
            url = "not a url"
            self.malformed += 1
        sent = int(received.timestamp() * 1000) - rng.randint(5, 300)
        skew = (session.visitor % 7 - 3) * 20_000  # each visitor's clock is off by up to a minute
        data: dict[str, Any] = {"visitor_id": f"v{session.visitor}", "scroll_depth": rng.randint(0, 100)}
        if session.session_id:
            data["session_id"] = session.session_id
        payload: dict[str, Any] = {
            "event_id": event_id,
            "event_type": rng.choice(EVENT_TYPES),
            "page_url": url,
            "page_title": f"Item {page}",
            "timestamp": sent + skew - rng.randint(0, 2000),
            "sent_at": sent + skew,
            "event_data": data,
        }
        referrer = rng.choice(REFERRERS)
        if referrer:
            payload["referrer"] = referrer
        agent = BOT_AGENT if session.bot else USER_AGENTS[session.visitor % len(USER_AGENTS)]
        return event_id, payload, agent

    @staticmethod
    def client_ip(visitor_id: str) -> str:
        """A stable documentation-range IP per visitor."""
        n = int(visitor_id[1:])
        return f"198.51.{100 + n // 256 % 4}.{n % 256}"


def load_raw(
    conn: psycopg.Connection[Any],
    tenant_hk: bytes,
    stream: EventStream,
    n: int,
    *,
    chunk: int = 10_000,
    spread: timedelta = timedelta(hours=6),
) -> Iterator[int]:
    """Store `n` pending events of `stream` with raw.ingest_site_events, one transaction per chunk.

    Received times are spread evenly over `spread` ending now. Yields the count stored so far.
    """
    end = datetime.now(UTC)
    step = spread / max(n, 1)
    done = 0
    while done < n:
        size = min(chunk, n - done)
        ids: list[str] = []
        payloads: list[str] = []
        agents: list[str] = []
        ips: list[str] = []
        received: list[datetime] = []
        for i in range(done, done + size):
            at = end - spread + step * i
            event_id, payload, agent = stream.next(at)
            ids.append(event_id)
            payloads.append(json.dumps(payload, separators=(",", ":")))
            agents.append(agent)
            ips.append(stream.client_ip(payload["event_data"]["visitor_id"]))
            received.append(at)
        with conn.transaction():
            cur = conn.execute(
                INGEST,
                {
                    "tenant_hks": [tenant_hk] * size,
                    "event_ids": ids,
                    "payloads": payloads,
                    "user_agents": agents,
                    "client_ips": ips,
                    "received": received,
                    "record_sources": ["bench:load"] * size,
                },
            )
            stored = sum(1 for row in cur.fetchall() if not row[2])
        if stored != size:
            raise RuntimeError(f"stored {stored} of {size} events (duplicates in the stream?)")
        done += size
        yield done


def load(url: str, customer_id: str, n: int, *, seed: int = 1, label: str = "load") -> EventStream:
    """Load `n` pending events for `customer_id`, printing progress; the stream (its malformed count)."""
    stream = EventStream(prefix=f"{customer_id}-{seed}", seed=seed)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT util.tenant_hk(%s)", [customer_id]).fetchone()
        assert row is not None
        for done in load_raw(conn, row[0], stream, n):
            if done % 100_000 == 0 or done == n:
                rate = done / (time.perf_counter() - started)
                print(f"  {label}: {done:,}/{n:,} raw events stored ({rate:,.0f}/s)", flush=True)
    return stream
