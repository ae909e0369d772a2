"""The upgrades that partition raw (0011) and staging (0016) on a database holding 20,000 events,
half of them processed: the tables become partitions without a copy, every event stays exactly
once with its id, idempotency holds for the events stored before, processing goes on, and both
legacy partitions expire with their latest events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from tests.helpers.pipeline import CHROME, CUSTOMER, ingest
from tests.helpers.queries import scalar
from tests.helpers.tenants import make_tenant
from tests.helpers.vault_load import process_all, process_batch

from onevault import maintenance, migrations

EVENTS = 20_000
VISITORS = 1_000
BEFORE_PARTITIONS = 10

# What identifies every stored event and its processing, as one digest per layer.
RAW_DIGEST = (
    "SELECT count(*), md5(string_agg(raw_event_id || ':' || event_id || ':' || processing_status, ','"
    " ORDER BY raw_event_id)) FROM raw.site_tracking_events_r"
)
STAGING_DIGEST = (
    "SELECT count(*), md5(string_agg(raw_event_id || ':' || site_event_hk::text, ',' ORDER BY raw_event_id))"
    " FROM staging.site_tracking_events_s"
)


def _populate(conn: psycopg.Connection) -> None:
    """20,000 events of 1,000 visitors stored three days ago, half of them processed."""
    conn.execute(
        "SELECT raw.ingest_site_events(array_fill(util.tenant_hk(%(customer)s), ARRAY[%(n)s]),"
        " array_agg('evt-' || g ORDER BY g), array_agg(p ORDER BY g), array_fill(%(ua)s::text, ARRAY[%(n)s]),"
        " array_fill(NULL::inet, ARRAY[%(n)s]),"
        " array_agg(now() - interval '3 days' + g * interval '1 ms' ORDER BY g),"
        " array_fill('test'::text, ARRAY[%(n)s]))"
        " FROM generate_series(1, %(n)s) g"
        " CROSS JOIN LATERAL (SELECT jsonb_build_object('event_type', 'page_view',"
        "     'page_url', 'https://example.com/p' || g %% 40,"
        "     'visitor_id', 'v-' || g %% %(visitors)s) AS p) x",
        {"customer": CUSTOMER, "ua": CHROME, "n": EVENTS, "visitors": VISITORS},
    )
    while scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s") < EVENTS // 2:
        process_batch(conn, CUSTOMER, 1000)


def test_partitioning_a_populated_database_keeps_every_event_exactly_once(empty_db_url: str) -> None:
    """Populated, then rolled back to 0010 (plain tables, as an installation that never had 0011 has
    them), then upgraded."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        make_tenant(conn, CUSTOMER)
        _populate(conn)
        raw_before = conn.execute(RAW_DIGEST).fetchone()
        staging_before = conn.execute(STAGING_DIGEST).fetchone()
        assert raw_before is not None and raw_before[0] == EVENTS
        assert staging_before is not None and EVENTS // 2 <= staging_before[0] < EVENTS
    migrations.rollback(empty_db_url, to=BEFORE_PARTITIONS)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert (
            scalar(
                conn, "SELECT relkind::text FROM pg_class WHERE oid = 'raw.site_tracking_events_r'::regclass"
            )
            == "r"
        )
        assert conn.execute(RAW_DIGEST).fetchone() == raw_before

    migrations.upgrade(empty_db_url)

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute(RAW_DIGEST).fetchone() == raw_before
        assert conn.execute(STAGING_DIGEST).fetchone() == staging_before
        parts = scalar(
            conn, "SELECT array_agg(DISTINCT tableoid::regclass::text) FROM raw.site_tracking_events_r"
        )
        assert parts == ["raw.site_tracking_events_r_legacy"]
        parts = scalar(
            conn, "SELECT array_agg(DISTINCT tableoid::regclass::text) FROM staging.site_tracking_events_s"
        )
        assert parts == ["staging.site_tracking_events_s_legacy"]
        # Every stored event has its key, pointing at its own id.
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM raw.event_key k JOIN raw.site_tracking_events_r r USING (raw_event_id)"
                " WHERE r.tenant_hk = k.tenant_hk AND r.event_id = k.event_id",
            )
            == EVENTS
        )

        # Copies of events stored before are duplicates; new events go to today's partition.
        resent = ["evt-1", f"evt-{EVENTS - 1}", "evt-new-1", "evt-new-2"]
        ids = ingest(conn, [{"page_url": "https://example.com/again"}] * 4, resent)
        old = dict(
            conn.execute(
                "SELECT event_id, raw_event_id FROM raw.site_tracking_events_r WHERE event_id = ANY(%s)",
                (resent[:2],),
            ).fetchall()
        )
        assert ids[:2] == [old[e] for e in resent[:2]]
        today = datetime.now(UTC).date()
        assert [scalar(conn, "SELECT raw.event_day(%s)", (i,)) for i in ids[2:]] == [today, today]

        # Processing goes on: the other half and the new events, each once.
        claimed = process_all(conn, CUSTOMER, 5000)
        assert claimed == EVENTS - staging_before[0] + 2
        assert (
            scalar(
                conn, "SELECT count(*) FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED'"
            )
            == 0
        )
        assert scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s") == EVENTS + 2
        assert scalar(conn, "SELECT count(*) FROM business.site_event_h") == EVENTS + 2
        # The events processed after the upgrade joined their visitors' sessions, staged before it
        # (each visitor's 20 events span 20 s: one session each), and the new ones made one more.
        assert scalar(conn, "SELECT count(*) FROM business.site_session_state") == VISITORS + 1

        # The legacy partition holds every id up to the end of the day of its largest (ids given
        # before the rollback are today's): it expires with its latest event, and no day after it.
        report = maintenance.run(
            empty_db_url, maintenance.Retention(raw_days=1, staging_days=None), today=today + timedelta(2)
        )
        assert report is not None
        assert report.dropped == ["raw.site_tracking_events_r_legacy"]
        assert scalar(conn, "SELECT count(*) FROM raw.site_tracking_events_r") == 0
        # Staging's legacy partition (and the staged events of raw's legacy ids, staged after the
        # upgrade) likewise, with the days after it once they are past retention.
        report = maintenance.run(
            empty_db_url, maintenance.Retention(raw_days=None, staging_days=32), today=today + timedelta(40)
        )
        assert report is not None and report.held == {}
        assert report.dropped[0] == "staging.site_tracking_events_s_legacy"
        assert scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s") == 0


def test_events_stored_before_0011_join_their_sessions_after_both_upgrades(empty_db_url: str) -> None:
    """Ids given before 0011 carry no day. Events stored then (from an identity: 1, 2, …) and
    processed after the upgrades, half in one run and half in the next, make one session per
    visitor: the second run's lookups read the first's staged events in staging's legacy partition,
    though the events' day floor is far above their ids."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        make_tenant(conn, CUSTOMER)
    migrations.rollback(empty_db_url, to=BEFORE_PARTITIONS)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        # 100 visitors, 20 events each within 200 s, three days ago.
        conn.execute(
            "INSERT INTO raw.site_tracking_events_r (tenant_hk, event_id, raw_payload, received_timestamp,"
            " record_source)"
            " SELECT sha256(convert_to(%s, 'UTF8')), 'evt-' || g,"
            "  jsonb_build_object('page_url', 'https://example.com/', 'visitor_id', 'v-' || g %% 100),"
            "  now() - interval '3 days' + g * interval '100 ms', 'test'"
            " FROM generate_series(1, 2000) g",
            (CUSTOMER,),
        )
        assert scalar(conn, "SELECT max(raw_event_id) FROM raw.site_tracking_events_r") == 2000

    migrations.upgrade(empty_db_url)

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert process_batch(conn, CUSTOMER, 1000)["staged"] == 1000
        assert process_all(conn, CUSTOMER) == 1000
        assert scalar(conn, "SELECT count(*) FROM business.site_session_state") == 100
        parts = scalar(
            conn, "SELECT array_agg(DISTINCT tableoid::regclass::text) FROM staging.site_tracking_events_s"
        )
        assert parts == ["staging.site_tracking_events_s_legacy"]
