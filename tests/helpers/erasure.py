"""What an erasure must leave no trace of: a person's ids, IP hashes and events, anywhere in the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.helpers.queries import rows
from tests.helpers.secrets import occurrences


@dataclass(frozen=True)
class Person:
    """The identifiers of one person's data as stored: ids sent, derived visitor ids, IP hashes, event ids."""

    needles: tuple[str, ...]

    @classmethod
    def of(
        cls, conn: psycopg.Connection, customer_id: str, event_ids: Iterable[str], ids: Iterable[str] = ()
    ) -> Person:
        """The person of these events: `ids` (visitor and user ids as sent), the derived visitor ids and
        the IP hashes (hex) staging and raw hold for the events, and the event ids themselves."""
        event_ids = list(event_ids)
        stored = rows(
            conn,
            "SELECT encode(r.client_ip_hash, 'hex') AS ip_hash, s.visitor_id, s.visitor_derived"
            " FROM raw.site_tracking_events_r r"
            " LEFT JOIN staging.site_tracking_events_s s USING (raw_event_id)"
            " WHERE r.tenant_hk = util.tenant_hk(%s) AND r.event_id = ANY(%s)",
            (customer_id, event_ids),
        )
        assert len(stored) == len(event_ids), "some of the person's events are not stored"
        needles = {*ids, *event_ids}
        needles |= {str(r["ip_hash"]) for r in stored if r["ip_hash"]}
        needles |= {str(r["visitor_id"]) for r in stored if r["visitor_derived"]}
        return cls(tuple(sorted(needles)))

    def traces(self, conn: psycopg.Connection) -> dict[str, list[str]]:
        """Each identifier still found, with the `schema.table.column`s holding it."""
        found = {needle: occurrences(conn, needle) for needle in self.needles}
        return {needle: where for needle, where in found.items() if where}


def ip_hashes(conn: psycopg.Connection, customer_id: str, event_ids: Iterable[str]) -> set[str]:
    """The IP hashes (hex) of some events of a customer, as raw holds them."""
    return {
        str(r["h"])
        for r in rows(
            conn,
            "SELECT DISTINCT encode(client_ip_hash, 'hex') AS h FROM raw.site_tracking_events_r"
            " WHERE tenant_hk = util.tenant_hk(%s) AND event_id = ANY(%s)",
            (customer_id, list(event_ids)),
        )
    }


def raw_rows(conn: psycopg.Connection, customer_id: str) -> dict[str, dict[str, Any]]:
    """A customer's raw events by event id: payload, IP hash, user agent and processing status."""
    return {
        str(r["event_id"]): r
        for r in rows(
            conn,
            "SELECT event_id, raw_payload, client_ip_hash, user_agent, processing_status"
            " FROM raw.site_tracking_events_r WHERE tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        )
    }


def audit_records(conn: psycopg.Connection, customer_id: str) -> list[dict[str, Any]]:
    """A customer's erasure audit records, oldest first."""
    return rows(
        conn,
        "SELECT erasure_id, load_date, erased_by, identified_by, visitors, sessions, events, erased_rows,"
        " record_source FROM privacy.erasure_audit WHERE tenant_hk = util.tenant_hk(%s) ORDER BY erasure_id",
        (customer_id,),
    )
