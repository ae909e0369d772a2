"""The known event set of the stats numbers test: three customers in three time zones, written out.

Every event is listed with the local time of its customer, the batch it arrives in and the client
fields it sends. Read a customer's list top to bottom as the story of its site; comments say which
rule of docs/analytics.md or docs/vault.md an event is there for. `ingest` stores a batch in the raw
layer as the service receives it; the test then runs the real pipeline (raw → staging → business →
marts) on it before the next batch arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from tests.helpers.pipeline import CHROME

CHROME_WINDOWS = CHROME
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"

# Every batch is received after the last event of the period (the whole period ends on 15
# November in New York, 05:00 UTC on the 16th, and one session runs past it), later batches later:
# no event is in the future or more than 30 days old when received.
FIRST_RECEIPT = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
RECORD_SOURCE = "test:stats"
NOT_SENT = object()


@dataclass(frozen=True)
class Sent:
    """One event as a client sends it. `at` is the moment of the timestamp sent (UTC)."""

    event_id: str
    at: datetime
    url: str | None
    batch: int = 1
    event_type: str = "page_view"
    visitor_id: str | None = None
    session_id: str | None = None
    referrer: str | None = None
    user_agent: str = CHROME_WINDOWS
    ip: str = "203.0.113.7"
    event_data: object = NOT_SENT

    def payload(self) -> dict[str, Any]:
        """The JSON body of the event."""
        body: dict[str, Any] = {
            "event_type": self.event_type,
            "timestamp": self.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        optional = {
            "page_url": self.url,
            "visitor_id": self.visitor_id,
            "session_id": self.session_id,
            "referrer": self.referrer,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.event_data is not NOT_SENT:
            body["event_data"] = self.event_data
        return body

    @property
    def received(self) -> datetime:
        """When the service receives it: its batch's receipt."""
        return FIRST_RECEIPT + timedelta(hours=self.batch - 1)


@dataclass(frozen=True)
class Customer:
    """A customer of the data set: its zone, its events and the date ranges the test asks about."""

    customer_id: str
    zone: str
    site: str
    events: tuple[Sent, ...]
    # (first day, last day, why this range)
    ranges: tuple[tuple[str, str, str], ...]
    # A query's filter values that find something in this customer's data.
    campaign_fragment: str = ""

    @property
    def batches(self) -> list[list[Sent]]:
        """The events by batch, in sending order."""
        count = max(e.batch for e in self.events)
        return [[e for e in self.events if e.batch == n] for n in range(1, count + 1)]


def local(zone: str, text: str, fold: int = 0) -> datetime:
    """The UTC moment of local time `text` ('2026-11-02 09:00[:30]') in `zone` (`fold` 1: the second
    of a wall time that occurs twice, when clocks go back)."""
    naive = datetime.fromisoformat(text)
    return naive.replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


@dataclass
class Story:
    """Builds a customer's event list: `e('u1', '11-02 09:00', '/pricing', ...)`."""

    prefix: str
    zone: str
    site: str
    events: list[Sent] = field(default_factory=list)

    def e(self, event_id: str, when: str, page: str | None, **fields: Any) -> Sent:
        """One event at local time 2026-`when` on path `page` of the site (an absolute URL as is);
        `fold=1`: the second time the wall clock shows `when`."""
        fold = int(fields.pop("fold", 0))
        url = page if page is None or "://" in page or not page.startswith("/") else self.site + page
        sent = Sent(f"{self.prefix}-{event_id}", local(self.zone, f"2026-{when}", fold), url, **fields)
        self.events.append(sent)
        return sent


# --- Customer 1: UTC (no zone set) ---------------------------------------------------------------


def _utc_customer() -> Customer:
    s = Story("utc", "UTC", "https://example.com")
    e = s.e
    # Anna: desktop, client visitor and session ids, comes back on 4 and 9 November.
    anna = {"visitor_id": "v-anna", "user_agent": CHROME_WINDOWS}
    e(
        "a1",
        "11-02 09:00",
        "/?utm_source=google&utm_medium=cpc&utm_campaign=Launch",
        session_id="s-a1",
        referrer="https://www.google.com/search?q=onevault",
        **anna,
    )
    e("a2", "11-02 09:03", "/pricing", session_id="s-a1", **anna)
    e("a3", "11-02 09:07", "/pricing", event_type="signup", session_id="s-a1", **anna)
    # The same ids in other case and with blanks: the same visitor and session (docs/vault.md).
    e("a4", "11-02 09:10", "/docs", session_id=" S-A1 ", visitor_id=" V-Anna", user_agent=CHROME_WINDOWS)
    e("a5", "11-04 14:00", "/docs", session_id="s-a2", **anna)
    e("a6", "11-04 14:01", "/docs", event_type="download", session_id="s-a2", **anna)
    e("a7", "11-09 10:00", "/blog/post-1", session_id="s-a3", referrer="https://t.co/xyz", **anna)
    # INVALID (event type): would start s-a1 earlier, on another page, if it counted.
    e("a0", "11-02 08:55", "/quarantine-page", event_type="sign up!", session_id="s-a1", **anna)

    # Ben: an iPhone, no session ids (sessions derived by 30 minutes of inactivity); a session over
    # midnight (the customer's local midnight is UTC's).
    ben = {"visitor_id": "v-ben", "user_agent": SAFARI_IPHONE}
    e("b1", "11-02 23:50", "/", referrer="https://news.ycombinator.com/item?id=1", **ben)
    e("b2", "11-03 00:05", "/pricing", **ben)
    e("b3", "11-03 00:20", "/signup", **ben)
    e("b4", "11-03 08:00", "/blog/post-1", referrer="https://duckduckgo.com/", **ben)  # a bounce, until b5
    # Late: 20 minutes before b4, so it joins b4's session as its first event (entry page, referrer
    # and channel change; no longer a bounce).
    e("b5", "11-03 07:40", "/docs", batch=2, referrer="https://blog.example.org/post", **ben)
    # INVALID (page_url not a URL).
    e("b0", "11-03 12:00", "not a url", **ben)

    # Carl: a client session whose first event is anonymous (a derived visitor, from IP and agent);
    # the session belongs to the visitor of its latest event, v-carl.
    e(
        "c1",
        "11-05 12:00",
        "/",
        session_id="s-c1",
        user_agent=FIREFOX_MAC,
        ip="198.51.100.20",
        referrer="https://Blog.Example.org:443/onevault-review",
    )
    carl = {"visitor_id": "v-carl", "user_agent": FIREFOX_MAC, "ip": "198.51.100.20"}
    e("c2", "11-05 12:04", "/pricing", session_id="s-c1", **carl)
    e("c3", "11-05 12:06", "/signup", event_type="signup", session_id="s-c1", **carl)
    e(
        "c4",
        "11-10 18:00",
        "/docs?utm_source=newsletter&utm_medium=email&utm_campaign=nov-digest",
        session_id="s-c2",
        **carl,
    )
    # INVALID (event_data not an object), in s-c1 before its first event.
    e("c0", "11-05 11:58", "/", batch=2, session_id="s-c1", event_data="oops", **carl)

    # An Android phone without any id: a derived visitor (IP + agent) and derived sessions.
    droid = {"user_agent": CHROME_ANDROID, "ip": "198.51.100.30"}
    e("d1", "11-02 10:00", "/", referrer="https://www.bing.com/", **droid)
    e("d2", "11-02 10:20", "/pricing", **droid)
    e("d3", "11-02 11:10", "/pricing", **droid)  # 50 minutes later: a second session ...
    e("d4", "11-02 11:12", "/pricing", event_type="outbound_click", **droid)
    e("d5", "11-02 10:45", "/features", batch=2, **droid)  # ... until this late event merges the two
    e("d6", "11-02 11:40", "/pricing", batch=3, event_type="signup", **droid)  # and this one extends it

    # Dana comes back on several days with two devices; her visits' device is the one of each
    # session's last event (s-d4 starts on the desktop and ends on the phone).
    dana = {"visitor_id": "v-dana"}
    e("n1", "11-03 19:00", "/", session_id="s-d1", **dana)
    e("n2", "11-03 19:02", "/pricing", session_id="s-d1", **dana)
    e(
        "n3",
        "11-04 07:30",
        "/",
        session_id="s-d2",
        user_agent=SAFARI_IPHONE,
        referrer="https://m.facebook.com/",
        **dana,
    )
    e(
        "n4",
        "11-09 12:00",
        "/pricing",
        session_id="s-d3",
        referrer="https://www.bing.com/search?q=vault",
        **dana,
    )
    e("n5", "11-12 20:00", "/", session_id="s-d4", **dana)
    e("n6", "11-12 20:05", "/docs", session_id="s-d4", user_agent=SAFARI_IPHONE, **dana)

    # Erik: custom events without a page (entry page of a session: its first event *with* a page;
    # a session with no page at all has none); an internal referrer; a late event moving a
    # session's start to the day before.
    erik = {"visitor_id": "v-erik", "user_agent": FIREFOX_MAC}
    e("e1", "11-06 15:00", None, event_type="app_open", session_id="s-e1", **erik)
    e("e2", "11-06 15:02", "/", session_id="s-e1", **erik)
    e("e3", "11-06 17:00", None, event_type="app_open", session_id="s-e2", **erik)
    e("e4", "11-13 09:00", "/docs", session_id="s-e3", referrer="https://example.com/blog/post-1", **erik)
    e("e5", "11-14 00:10", "/", session_id="s-e4", **erik)
    e("e6", "11-14 00:25", "/pricing", session_id="s-e4", **erik)
    e("e7", "11-13 23:55", "/blog/post-1", batch=2, session_id="s-e4", **erik)

    # Fay: a late event from a crawler's agent in her session s-f1 makes it a bot session (all of it
    # leaves the figures); her next session is hers again.
    fay = {"visitor_id": "v-fay"}
    e("f1", "11-07 11:00", "/", session_id="s-f1", **fay)
    e("f2", "11-07 11:05", "/pricing", session_id="s-f1", **fay)
    e("f3", "11-07 11:02", "/pricing", batch=3, session_id="s-f1", user_agent=GOOGLEBOT, **fay)
    e("f4", "11-08 09:00", "/docs", session_id="s-f2", referrer="https://www.google.com/", **fay)

    # Googlebot: derived, and with client ids; /bot-trap is a page only bots see.
    bot = {"user_agent": GOOGLEBOT, "ip": "66.249.66.1"}
    e("g1", "11-02 05:00", "/", **bot)
    e("g2", "11-02 05:01", "/pricing", **bot)
    e("g3", "11-02 05:02", "/bot-trap", event_type="crawl", **bot)
    e(
        "g4",
        "11-04 03:00",
        "/blog/post-1",
        visitor_id="v-crawler",
        session_id="s-bot",
        referrer="https://www.google.com/",
        **bot,
    )

    # A retry: a2 sent again in a later batch is the same event (the raw layer stores it once).
    s.events.append(
        Sent(
            "utc-a2",
            local("UTC", "2026-11-02 09:03"),
            s.site + "/pricing",
            batch=2,
            session_id="s-a1",
            **anna,
        )
    )
    return Customer(
        "stats-utc",
        "UTC",
        s.site,
        tuple(s.events),
        ranges=(
            ("2026-11-02", "2026-11-02", "the day Ben's session starts before midnight"),
            ("2026-11-03", "2026-11-03", "the day it ends: its events count, its visit does not"),
            ("2026-11-02", "2026-11-03", "both days of the midnight session"),
            ("2026-11-13", "2026-11-14", "Erik's session moved to the 13th by a late event"),
            ("2026-10-31", "2026-11-15", "the whole period"),
        ),
        campaign_fragment="LAUNCH",
    )


# --- Customer 2: Europe/Berlin (UTC+1 in November) ------------------------------------------------


def _berlin_customer() -> Customer:
    zone = "Europe/Berlin"
    s = Story("ber", zone, "https://shop.example.de")
    e = s.e
    # The same visitor and session ids as the UTC customer's: other customers' visitors and sessions.
    anna = {"visitor_id": "v-anna"}
    # A session over the month's end (31 October → 1 November, local), tagged with a campaign whose
    # name is percent-encoded.
    e(
        "a1",
        "10-31 23:50",
        "/?utm_source=instagram&utm_medium=social&utm_campaign=black%20friday",
        session_id="s-a1",
        referrer="https://l.instagram.com/",
        **anna,
    )
    e("a2", "11-01 00:10", "/products/lamp", session_id="s-a1", **anna)
    e("a3", "11-01 00:12", "/products/lamp", event_type="add_to_cart", session_id="s-a1", **anna)

    # Jonas: a tablet, back on three days; s-j2 runs over Berlin's midnight (22:45 → 23:15 UTC: one
    # UTC day).
    jonas = {"visitor_id": "v-jonas", "user_agent": SAFARI_IPAD, "ip": "192.0.2.10"}
    e("j1", "11-02 18:00", "/", session_id="s-j1", referrer="https://www.google.de/", **jonas)
    e("j2", "11-02 18:05", "/products/chair", session_id="s-j1", **jonas)
    e(
        "j3",
        "11-05 23:45",
        "/products/chair",
        session_id="s-j2",
        referrer="https://www.ecosia.org/search?q=chair",
        **jonas,
    )
    e("j4", "11-06 00:05", "/products/chair", event_type="add_to_cart", session_id="s-j2", **jonas)
    e("j5", "11-06 00:15", "/checkout", event_type="purchase", session_id="s-j2", **jonas)
    e(
        "j6",
        "11-09 12:00",
        "/products/lamp",
        session_id="s-j3",
        referrer="https://www.reddit.com/r/design",
        **jonas,
    )
    # INVALID (event type with a space).
    e("j0", "11-02 17:59", "/", event_type="add to cart", session_id="s-j1", **jonas)

    # Mia, derived visitor and sessions: a session over UTC's midnight (23:50 → 00:20 UTC) that is
    # all on 7 November in Berlin.
    mia = {"user_agent": FIREFOX_MAC, "ip": "192.0.2.44"}
    e("m1", "11-07 00:50", "/", referrer="https://www.google.com/", **mia)
    e("m2", "11-07 01:05", "/products/lamp", **mia)
    e("m3", "11-07 01:20", "/checkout", **mia)

    # An Android phone, derived: its session starts at 00:10 on the 10th until a late event at 23:50
    # on the 9th joins it as its first event: the visit moves to the 9th, with the late event's
    # referrer (the UTM tag on its second page never was the session's).
    droid = {"user_agent": CHROME_ANDROID, "ip": "192.0.2.55"}
    e("d1", "11-10 00:10", "/products/chair", **droid)
    e("d2", "11-10 00:25", "/products/lamp?utm_source=newsletter&utm_medium=email", **droid)
    e("d3", "11-09 23:50", "/", batch=2, referrer="https://duckduckgo.com/", **droid)

    # Lukas: internal referrer; a partner's campaign.
    lukas = {"visitor_id": "v-lukas"}
    e("l1", "11-03 09:00", "/", session_id="s-l1", referrer="https://shop.example.de/products/lamp", **lukas)
    e("l2", "11-03 09:30", "/products/lamp", session_id="s-l1", **lukas)
    e("l3", "11-03 09:15", "/about", batch=2, session_id="s-l1", **lukas)
    e(
        "l4",
        "11-11 16:00",
        "/products/lamp?utm_source=Partner&utm_campaign=Winter",
        session_id="s-l2",
        referrer="https://partner.example.net/deals",
        **lukas,
    )
    e("l5", "11-11 16:10", "/checkout", event_type="purchase", session_id="s-l2", **lukas)
    # INVALID (not an http(s) URL).
    e("l0", "11-11 16:05", "ftp://shop.example.de/file", session_id="s-l2", **lukas)

    # Bingbot, derived.
    bot = {"user_agent": BINGBOT, "ip": "40.77.167.1"}
    e("g1", "11-03 04:00", "/", **bot)
    e("g2", "11-03 04:01", "/bot-trap", **bot)
    e("g3", "11-05 23:58", "/products/chair", batch=3, **bot)
    return Customer(
        "stats-berlin",
        zone,
        s.site,
        tuple(s.events),
        ranges=(
            ("2026-11-05", "2026-11-05", "the day s-j2 starts before Berlin's midnight (one UTC day)"),
            ("2026-11-06", "2026-11-06", "the day it ends"),
            ("2026-11-05", "2026-11-07", "s-j2, and Mia's session over UTC's midnight"),
            ("2026-11-09", "2026-11-10", "the Android session moved to the 9th by a late event"),
            ("2026-10-31", "2026-11-15", "the whole period (two months, three weeks)"),
        ),
        campaign_fragment="FRIDAY",
    )


# --- Customer 3: America/New_York (clocks go back at 02:00 on 1 November 2026) --------------------


def _new_york_customer() -> Customer:
    zone = "America/New_York"
    s = Story("ny", zone, "https://store.example.com")
    e = s.e
    sam = {"visitor_id": "v-sam"}
    # 01:30 and 01:40 EDT, then 01:20 EST, 40 minutes later: two sessions in the local hour 01:00.
    e("s1", "11-01 01:30", "/", session_id="s-s1", referrer="https://www.google.com/", **sam)
    e("s2", "11-01 01:40", "/shop", session_id="s-s1", **sam)
    e("s3", "11-01 01:20", "/shop", fold=1, session_id="s-s2", referrer="https://www.facebook.com/", **sam)
    # A session over New York's midnight (04:40 → 05:12 UTC: one UTC day).
    e("s4", "11-04 23:40", "/", session_id="s-s3", **sam)
    e("s5", "11-05 00:10", "/shop", session_id="s-s3", **sam)
    e("s6", "11-05 00:12", "/checkout", event_type="purchase", session_id="s-s3", **sam)
    # INVALID (a URL without a host).
    e("s0", "11-04 23:30", "https://", session_id="s-s3", **sam)

    # Zoe: iPhone, derived visitor; a session at 20:30 local (01:30 UTC the next day) with a full
    # campaign tag, and one a week later that a late event extends backwards.
    zoe = {"user_agent": SAFARI_IPHONE, "ip": "203.0.113.50"}
    e(
        "z1",
        "11-05 20:30",
        "/?utm_source=tiktok&utm_medium=video&utm_campaign=Fall+Sale",
        referrer="https://www.tiktok.com/",
        **zoe,
    )
    e("z2", "11-05 20:45", "/shop", **zoe)
    e("z3", "11-12 09:00", "/shop", **zoe)
    e("z4", "11-12 08:40", "/", batch=2, referrer="https://www.google.com/", **zoe)

    # Liam: a late event gives s-li1 an earlier start and a search referrer; s-li3 starts on the last
    # day of the period and ends after it.
    liam = {"visitor_id": "v-liam", "user_agent": FIREFOX_MAC}
    e("i1", "11-02 12:00", "/", session_id="s-li1", **liam)
    e("i2", "11-02 12:10", "/", event_type="newsletter_signup", session_id="s-li1", **liam)
    e("i3", "11-02 11:50", "/", batch=3, session_id="s-li1", referrer="https://www.bing.com/", **liam)
    e("i4", "11-08 15:00", "/shop", session_id="s-li2", referrer="https://www.linkedin.com/feed", **liam)
    e("i5", "11-15 23:50", "/", session_id="s-li3", **liam)
    e("i6", "11-16 00:05", "/shop", session_id="s-li3", **liam)

    # Kim's visit, the customer's first, becomes a bot session when a crawler's event in it comes
    # late: the customer's data then starts on 1 November (the rollup rows it leaves at zero on 31
    # October are no data).
    kim = {"visitor_id": "v-kim", "session_id": "s-k1"}
    e("k1", "10-31 21:00", "/", **kim)
    e("k2", "10-31 21:05", "/shop", **kim)
    e("k3", "10-31 21:03", "/shop", batch=3, user_agent=GOOGLEBOT, **kim)

    bot = {"user_agent": GOOGLEBOT, "ip": "66.249.66.2"}
    e("g1", "11-03 02:00", "/", **bot)
    e("g2", "11-03 02:00:30", "/shop", **bot)
    return Customer(
        "stats-ny",
        zone,
        s.site,
        tuple(s.events),
        ranges=(
            ("2026-11-01", "2026-11-01", "the day clocks go back (25 hours, local hour 01:00 twice)"),
            ("2026-11-05", "2026-11-05", "the day after s-s3 starts; Zoe's evening session"),
            ("2026-11-04", "2026-11-05", "both days of the midnight session"),
            ("2026-10-31", "2026-11-15", "the whole period (s-li3 ends after it)"),
        ),
        campaign_fragment="sale",
    )


UTC_CUSTOMER = _utc_customer()
BERLIN_CUSTOMER = _berlin_customer()
NEW_YORK_CUSTOMER = _new_york_customer()
CUSTOMERS = (UTC_CUSTOMER, BERLIN_CUSTOMER, NEW_YORK_CUSTOMER)
WHOLE_PERIOD = (date(2026, 10, 31), date(2026, 11, 15))


def ingest(conn: psycopg.Connection, customer_id: str, events: list[Sent]) -> None:
    """Store events with raw.ingest_site_events, each with its own agent, IP and receipt time."""
    n = len(events)
    conn.execute(
        "SELECT count(*) FROM raw.ingest_site_events("
        " array_fill(util.tenant_hk(%s), ARRAY[%s]), %s::text[], %s::jsonb[], %s::text[], %s::inet[],"
        " %s::timestamptz[], array_fill(%s::text, ARRAY[%s]))",
        (
            customer_id,
            n,
            [e.event_id for e in events],
            [Jsonb(e.payload()) for e in events],
            [e.user_agent for e in events],
            [e.ip for e in events],
            [e.received for e in events],
            RECORD_SOURCE,
            n,
        ),
    )


def set_zone(conn: psycopg.Connection, customer_id: str, zone: str) -> None:
    """Record the customer's time zone directly (before any of its events arrive)."""
    conn.execute(
        "INSERT INTO auth.tenant_zone_s (tenant_hk, time_zone, record_source)"
        " VALUES (util.tenant_hk(%s), %s, 'test')",
        (customer_id, zone),
    )
