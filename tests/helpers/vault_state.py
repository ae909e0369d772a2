"""A customer's current business state read from the vault's current views, keyed by business keys,
so that two customers loaded with the same events compare equal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from tests.helpers.queries import rows
from tests.helpers.vault_load import iso

SESSION_FIELDS = (
    "session_key",
    "visitor_key",
    "session_start",
    "session_end",
    "page_views",
    "event_count",
    "duration_seconds",
    "entry_page",
    "exit_page",
    "is_bounce",
    "is_bot",
    "referrer_host",
    "referrer_class",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "record_source",
)
VISITOR_FIELDS = (
    "visitor_key",
    "user_id",
    "browser_family",
    "browser_version",
    "os_family",
    "os_version",
    "device_type",
    "is_bot",
    "is_derived",
    "first_seen",
    "last_seen",
)


@dataclass(frozen=True)
class VaultState:
    """Sessions in force and visitors by key, and the session in force of each event by event_id."""

    sessions: dict[str, dict[str, Any]]
    visitors: dict[str, dict[str, Any]]
    event_sessions: dict[str, str]

    def partition(self) -> set[frozenset[str]]:
        """The events grouped by the session they are in."""
        groups: dict[str, set[str]] = {}
        for event_id, session_key in self.event_sessions.items():
            groups.setdefault(session_key, set()).add(event_id)
        return {frozenset(g) for g in groups.values()}


def derived_label(first_event: datetime) -> str:
    """The name a derived visitor is compared by.

    A derived visitor's key (`anon-…`) is a hash of the customer, the IP and the user agent, so the
    same visitor has another key under another customer. The tests give each event its own time,
    so a derived visitor is named by the time of its first event instead.
    """
    return f"derived@{iso(first_event)}"


def vault_state(conn: psycopg.Connection, customer_id: str) -> VaultState:
    """What business.site_session_current, site_visitor_current and site_event_session_current say."""
    visitors_found = rows(
        conn,
        "SELECT v.* FROM business.site_visitor_current v WHERE v.tenant_hk = util.tenant_hk(%s)",
        (customer_id,),
    )
    # Derived visitors by hash key (a client may send an id equal to a derived key): their label,
    # from the first of their events (staging holds each event's visitor).
    first_events: dict[bytes, datetime] = dict(
        conn.execute(
            "SELECT site_visitor_hk, min(occurred_at) FROM staging.site_tracking_events_s "
            "WHERE tenant_hk = util.tenant_hk(%s) AND validation_status <> 'INVALID' GROUP BY 1",
            (customer_id,),
        ).fetchall()
    )
    renamed: dict[bytes, str] = {}
    visitors: dict[str, dict[str, Any]] = {}
    for v in visitors_found:
        key = str(v["visitor_key"])
        if v["is_derived"] and v["site_visitor_hk"] in first_events:
            key = derived_label(first_events[v["site_visitor_hk"]])
            assert key not in renamed.values(), f"two derived visitors with a first event at {key}"
            renamed[bytes(v["site_visitor_hk"])] = key
        assert key not in visitors, f"visitor {key!r} twice in site_visitor_current"
        visitors[key] = {f: v[f] for f in VISITOR_FIELDS} | {"visitor_key": key}

    # Sessions by hash key: their name, a derived visitor's label put in place of its key inside
    # the keys of its derived sessions (`<visitor key>@<start>`).
    names: dict[bytes, str] = {}
    sessions: dict[str, dict[str, Any]] = {}
    for s in rows(
        conn,
        "SELECT s.* FROM business.site_session_current s WHERE s.tenant_hk = util.tenant_hk(%s)",
        (customer_id,),
    ):
        key, visitor = str(s["session_key"]), str(s["visitor_key"])
        label = None if s["site_visitor_hk"] is None else renamed.get(bytes(s["site_visitor_hk"]))
        if label is not None:
            if key.startswith(visitor + "@"):
                key = label + key[len(visitor) :]
            visitor = label
        assert key not in sessions, f"session {key!r} twice in site_session_current"
        names[bytes(s["site_session_hk"])] = key
        sessions[key] = {f: s[f] for f in SESSION_FIELDS} | {"session_key": key, "visitor_key": visitor}

    links = rows(
        conn,
        """
        SELECT e.site_event_bk AS event_id, c.site_session_hk, s.site_session_bk AS session_key
        FROM business.site_event_session_current c
        JOIN business.site_event_h e ON e.site_event_hk = c.site_event_hk
        JOIN business.site_session_h s ON s.site_session_hk = c.site_session_hk
        WHERE c.tenant_hk = util.tenant_hk(%s)
        """,
        (customer_id,),
    )
    event_sessions: dict[str, str] = {}
    for link in links:
        event_id = str(link["event_id"])
        assert event_id not in event_sessions, f"event {event_id!r} in two sessions at once"
        # A session not in site_session_current keeps its key: the comparison shows it.
        event_sessions[event_id] = names.get(bytes(link["site_session_hk"]), str(link["session_key"]))
    return VaultState(sessions, visitors, event_sessions)
