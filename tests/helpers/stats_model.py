"""What the stats API must answer, computed in plain Python from the events as they were sent.

An independent implementation of docs/analytics.md (and of the session rules of docs/vault.md):
it never reads the vault or the marts. Its sessions are derived here from the sent events (a
client session id makes the session; without one, a visitor's events form sessions by more than
30 minutes of inactivity), referrers, channels and UTM tags are read from the sent URLs, bots and
quarantined (INVALID) events are left out by the documented rules.

Browser, OS, device and the bot flag of a user agent are the one thing taken from the application:
`onevault.pipeline.useragents.parse`, the parser the pipeline runs before staging. Parsing agents
is not what this model checks; what the marts and the API do with the parsed values is.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from onevault.pipeline.useragents import parse as parse_user_agent
from tests.helpers.stats_events import NOT_SENT, Sent

METRICS = ("visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit")
EVENT_DIMENSIONS = ("event:page", "event:type")
VISIT_DIMENSIONS = (
    "visit:entry_page",
    "visit:exit_page",
    "visit:referrer",
    "visit:channel",
    "visit:utm_source",
    "visit:utm_medium",
    "visit:utm_campaign",
    "visit:browser",
    "visit:os",
    "visit:device",
)
TIME_DIMENSIONS = ("time:hour", "time:day", "time:week", "time:month")
DIMENSIONS = EVENT_DIMENSIONS + VISIT_DIMENSIONS + TIME_DIMENSIONS
SESSION_GAP = timedelta(minutes=30)
# The figure each metric is computed from (a ratio: from the visits and their sums).
FIGURE_OF = {
    "visitors": "visitors",
    "visits": "visits",
    "bounce_rate": "visits",
    "visit_duration": "visits",
    "views_per_visit": "visits",
    "pageviews": "pageviews",
    "events": "events",
}
FIGURES = ("visits", "bounces", "duration", "visit_pageviews", "pageviews", "events")
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# The documented referrer classes (docs/analytics.md: direct, search, social, internal, other) for
# the referrers the data set uses: a search engine's name as a label of the host; a social
# network's domain or a host under it.
SEARCH_ENGINES = frozenset({"google", "bing", "duckduckgo", "yahoo", "ecosia"})
SOCIAL_NETWORKS = (
    "t.co",
    "facebook.com",
    "instagram.com",
    "reddit.com",
    "linkedin.com",
    "tiktok.com",
    "news.ycombinator.com",
)

Value = str | None
Key = tuple[Value, ...]
Filter = tuple[str, str, tuple[Value, ...]]


def quarantine_reason(event: Sent) -> str | None:
    """Why the pipeline quarantines the event (INVALID: it never reaches the vault), if it does."""
    if not EVENT_TYPE.fullmatch(event.event_type):
        return "invalid event_type"
    if event.url is not None:
        parts = urlsplit(event.url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return "page_url is not an absolute http(s) URL"
    if (
        event.event_data is not NOT_SENT
        and event.event_data is not None
        and not isinstance(event.event_data, dict)
    ):
        return "event_data is not an object"
    if event.at > event.received + timedelta(days=1):
        return "timestamp is in the future"
    return None


def canonical(value: str | None) -> str | None:
    """A visitor or session id as the vault compares it: trimmed, lower case, blank as not sent."""
    if value is None:
        return None
    return value.strip().lower() or None


def page_path(url: str | None) -> str | None:
    """The page of an event: its URL's path ('/' for none); None for an event without a page."""
    if url is None:
        return None
    return urlsplit(url.strip()).path or "/"


def host(url: str | None) -> str | None:
    """The lower-case host of a URL, without user info or port."""
    if url is None:
        return None
    try:
        return urlsplit(url.strip()).hostname or None
    except ValueError:
        return None


def channel(referrer_host: str | None, page_host: str | None) -> str:
    """The referrer class of an event."""
    if referrer_host is None:
        return "direct"
    if referrer_host == page_host:
        return "internal"
    if SEARCH_ENGINES & set(referrer_host.split(".")[:-1]):
        return "search"
    if any(referrer_host == d or referrer_host.endswith("." + d) for d in SOCIAL_NETWORKS):
        return "social"
    return "other"


def utm(url: str | None, name: str) -> str | None:
    """A UTM parameter of a page URL's query, decoded."""
    if url is None:
        return None
    values = parse_qs(urlsplit(url.strip()).query).get(name)
    return values[0] if values else None


def round_half_up(value: Fraction, digits: int) -> float | int:
    """`value` rounded to `digits` decimals, halves away from zero."""
    scale = 10**digits
    magnitude = Fraction(int(abs(value) * scale + Fraction(1, 2)), scale)
    rounded = magnitude if value >= 0 else -magnitude
    return int(rounded) if digits == 0 else float(round(float(rounded), digits))


def change(metric: str, new: float, old: float) -> float | None:
    """A comparison's change (the API's schema, not docs/analytics.md, defines it): percent, one
    decimal; bounce_rate: the difference in points; None when the previous value is 0."""
    if old == 0:
        return None
    new_value, old_value = Fraction(str(new)), Fraction(str(old))
    if metric == "bounce_rate":
        return float(new_value - old_value)
    return float(round_half_up((new_value - old_value) * 100 / old_value, 1))


@dataclass
class Event:
    """A valid event of the model: what was sent, and its local time."""

    sent: Sent
    local: datetime  # naive, in the customer's zone
    page: Value
    session: Session | None = None

    @property
    def day(self) -> date:
        return self.local.date()


@dataclass
class Session:
    """A session in force, with its figures and visit attributes."""

    key: str
    events: list[Event]
    holder: str = ""
    is_bot: bool = False
    start_local: datetime = datetime.min
    pageviews: int = 0
    duration: int = 0
    attributes: dict[str, Value] = field(default_factory=dict)

    @property
    def bounce(self) -> bool:
        return self.pageviews <= 1


def no_figures() -> dict[str, Any]:
    """The figures of a row before anything is counted: no visitors, zeros."""
    return {"visitors": set()} | dict.fromkeys(FIGURES, 0)


def visitor_of(event: Sent) -> str:
    """Who sent an event: its canonical visitor id, else the IP and agent it is derived from."""
    return canonical(event.visitor_id) or f"derived|{event.ip}|{event.user_agent}"


def bucket(dimension: str, moment: datetime) -> str:
    """The local bucket of a time dimension, as the API writes it."""
    if dimension == "time:hour":
        return moment.replace(minute=0, second=0, microsecond=0).isoformat()
    day = moment.date()
    if dimension == "time:day":
        return day.isoformat()
    if dimension == "time:week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if dimension == "time:month":
        return day.replace(day=1).isoformat()
    raise ValueError(dimension)


def buckets(dimension: str, first: date, last: date) -> list[str]:
    """Every bucket of a local date range."""
    found: list[str] = []
    day = first
    while day <= last:
        if dimension == "time:hour":
            found += [datetime(day.year, day.month, day.day, h).isoformat() for h in range(24)]
        else:
            found.append(bucket(dimension, datetime(day.year, day.month, day.day)))
        day += timedelta(days=1)
    return list(dict.fromkeys(found))


def matches(operator: str, value: Value, values: Sequence[Value]) -> bool:
    """Whether a dimension value passes a filter."""
    if operator == "is":
        return value in values
    if operator == "is_not":
        return value not in values
    if operator == "contains":
        return value is not None and any(v is not None and v.lower() in value.lower() for v in values)
    raise ValueError(operator)


class StatsModel:
    """A customer's analytics from its sent events, per docs/analytics.md."""

    def __init__(
        self,
        sent: Iterable[Sent],
        zone: str,
        agent: Callable[[str], Any] = parse_user_agent,
    ) -> None:
        self.zone = ZoneInfo(zone)
        self.agent = agent
        unique: dict[str, Sent] = {}
        for s in sent:
            unique.setdefault(s.event_id, s)  # a copy sent again is the same event
        self.quarantined = [s for s in unique.values() if quarantine_reason(s) is not None]
        valid = [s for s in unique.values() if quarantine_reason(s) is None]
        times = [s.at for s in valid]
        # The vault orders events of one moment by their hash keys; the data set avoids the case.
        assert len(set(times)) == len(times), "two valid events at the same moment"
        self.events = [Event(s, self.local(s.at), page_path(s.url)) for s in valid]
        self.sessions = self._sessions()

    def local(self, moment: datetime) -> datetime:
        """A moment as the customer's wall clock shows it."""
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def _sessions(self) -> list[Session]:
        client: dict[str, list[Event]] = defaultdict(list)
        timelines: dict[str, list[Event]] = defaultdict(list)
        for e in self.events:
            session_id = canonical(e.sent.session_id)
            if session_id is not None:
                client[session_id].append(e)
            else:
                timelines[visitor_of(e.sent)].append(e)
        groups = dict(client)
        for who, timeline in timelines.items():
            timeline.sort(key=lambda e: e.sent.at)
            runs: list[list[Event]] = [[timeline[0]]]
            for before, after in pairwise(timeline):
                if after.sent.at - before.sent.at > SESSION_GAP:
                    runs.append([])
                runs[-1].append(after)
            for run in runs:
                groups[f"{who}@{run[0].sent.at.isoformat()}"] = run
        by_visitor: dict[str, list[Event]] = defaultdict(list)
        for e in self.events:
            by_visitor[visitor_of(e.sent)].append(e)
        sessions = []
        for key, members in groups.items():
            members.sort(key=lambda e: e.sent.at)
            session = Session(key, members)
            for e in members:
                e.session = session
            first, last = members[0], members[-1]
            # The holder: the visitor of the latest event; its current agent (of its latest event).
            session.holder = visitor_of(last.sent)
            as_of = max(by_visitor[session.holder], key=lambda e: e.sent.at)
            holder_agent = self.agent(as_of.sent.user_agent)
            session.is_bot = any(self.agent(e.sent.user_agent).is_bot for e in members)
            session.start_local = first.local
            session.pageviews = sum(e.sent.event_type == "page_view" for e in members)
            session.duration = int((last.sent.at - first.sent.at).total_seconds())
            paged = [e for e in members if e.page is not None]
            referrer_host = host(first.sent.referrer)
            session.attributes = {
                "visit:entry_page": paged[0].page if paged else None,
                "visit:exit_page": paged[-1].page if paged else None,
                "visit:referrer": referrer_host,
                "visit:channel": channel(referrer_host, host(first.sent.url)),
                "visit:utm_source": utm(first.sent.url, "utm_source"),
                "visit:utm_medium": utm(first.sent.url, "utm_medium"),
                "visit:utm_campaign": utm(first.sent.url, "utm_campaign"),
                "visit:browser": holder_agent.browser_family,
                "visit:os": holder_agent.os_family,
                "visit:device": holder_agent.device_type,
            }
            sessions.append(session)
        return sessions

    # --- queries -----------------------------------------------------------------------------------

    def first_day(self) -> date:
        """The first local day with data: an event of a session that counts."""
        return min(e.day for s in self.sessions if not s.is_bot for e in s.events)

    @staticmethod
    def value(dimension: str, event: Event, session: Session, time_of: datetime) -> Value:
        """An event's value of a dimension: its own (event:*), its session's (visit:*), `time_of`'s bucket."""
        if dimension == "event:page":
            return event.page
        if dimension == "event:type":
            return event.sent.event_type
        if dimension.startswith("time:"):
            return bucket(dimension, time_of)
        return session.attributes[dimension]

    def query(
        self,
        first: date,
        last: date,
        metrics: Sequence[str] = METRICS,
        dimensions: Sequence[str] = (),
        filters: Sequence[Filter] = (),
    ) -> dict[Key, list[Any]]:
        """The API's rows for a query: dimension values → metrics in the order asked."""
        event_filters = [f for f in filters if f[1].startswith("event:")]
        visit_filters = [f for f in filters if f[1].startswith("visit:")]
        kept_sessions = [
            s
            for s in self.sessions
            if not s.is_bot and all(matches(op, s.attributes[dim], vals) for op, dim, vals in visit_filters)
        ]
        # Events an event filter keeps (at any time: a session counts with any of them).
        kept: dict[str, list[Event]] = {
            s.key: [
                e
                for e in s.events
                if all(matches(op, self.value(dim, e, s, e.local), vals) for op, dim, vals in event_filters)
            ]
            for s in kept_sessions
        }
        counts: dict[Key, dict[str, Any]] = defaultdict(no_figures)

        def key(e: Event, s: Session, time_of: datetime) -> Key:
            return tuple(self.value(d, e, s, time_of) for d in dimensions)

        for s in kept_sessions:
            for e in kept[s.key]:
                if first <= e.day <= last:
                    c = counts[key(e, s, e.local)]
                    c["visitors"].add(s.holder)
                    c["events"] += 1
                    c["pageviews"] += e.sent.event_type == "page_view"
            if first <= s.start_local.date() <= last:
                # A session counts once under each value its kept events give it (event dimensions),
                # at its start (time dimensions).
                for k in {key(e, s, s.start_local) for e in kept[s.key]}:
                    c = counts[k]
                    c["visits"] += 1
                    c["bounces"] += s.bounce
                    c["duration"] += s.duration
                    c["visit_pageviews"] += s.pageviews
        # A row is a value with a non-zero figure among those the metrics asked read (with all
        # metrics: events or visits); the API says so (src/onevault/stats/queries.sql).
        asked = {FIGURE_OF[m] for m in metrics}
        found = {
            k: c for k, c in counts.items() if any(len(c[f]) if f == "visitors" else c[f] for f in asked)
        }
        if len(dimensions) == 1 and dimensions[0].startswith("time:"):
            for b in buckets(dimensions[0], first, last):
                found.setdefault((b,), no_figures())  # every bucket of the range, with zeros
        elif not dimensions:
            found.setdefault((), no_figures())  # one row even when nothing happened
        return {k: [self._metric(m, c) for m in metrics] for k, c in found.items()}

    @staticmethod
    def _metric(name: str, c: dict[str, Any]) -> Any:
        visits = c["visits"]
        if name == "visitors":
            return len(c["visitors"])
        if name in ("visits", "pageviews", "events"):
            return c[name]
        if visits == 0:
            # docs/analytics.md leaves a ratio of no visits open; the API's answer schema has no
            # null for a metric (StatsRow.metrics: numbers), so it is 0.
            return 0
        if name == "bounce_rate":
            return round_half_up(Fraction(100 * c["bounces"], visits), 1)
        if name == "visit_duration":
            return round_half_up(Fraction(c["duration"], visits), 0)
        if name == "views_per_visit":
            return round_half_up(Fraction(c["visit_pageviews"], visits), 2)
        raise ValueError(name)
