"""The `onevault` command: serve, database migrations, tenants and tokens."""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
import psycopg

from onevault import __version__, dbcode, keys, logs, maintenance, migrations, sqlfile
from onevault.auth import store, tokens
from onevault.config import Settings, get_settings
from onevault.db import (
    UnsupportedServer,
    check_server,
    connect,
    describe,
    open_pool,
    resolve_database_url,
    tuned_conninfo,
)
from onevault.export import stream as export_stream
from onevault.monitoring.pipeline import AUTOMATION_OBJECTS
from onevault.pipeline import marts, rebuild
from onevault.pipeline.result import NOTHING_DUE, PipelineResult
from onevault.pipeline.runner import PipelineRunner, ProcessingFailed
from onevault.privacy import erasure
from onevault.smoketest import smoke_test

MONITORING_QUERIES = sqlfile.load("onevault.monitoring", "queries.sql")


def _settings() -> Settings:
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    return settings


def _database_url(settings: Settings) -> str:
    """The database every command uses, refused in one line when the server is too old."""
    url = resolve_database_url(settings)
    check_server(url, settings)
    return url


def _conninfo(settings: Settings) -> str:
    return tuned_conninfo(_database_url(settings), settings)


def _keyed_conninfo(url: str, settings: Settings) -> str:
    """The database's connection string with the installation's secret key (see onevault.keys),
    which is created first if needed: taken over from a database that still holds it."""
    key = keys.secret_key(settings, tuned_conninfo(url, settings))
    return tuned_conninfo(url, settings, keys.session_settings(settings, key))


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the usual failures of a command into one-line messages instead of tracebacks."""
    try:
        yield
    except (
        store.AdminError,
        migrations.MigrationError,
        dbcode.CodeError,
        UnsupportedServer,
        keys.SecretKeyError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    except psycopg.errors.UndefinedTable:
        raise click.ClickException("the database is not initialised: run `onevault db upgrade`") from None
    except psycopg.errors.UndefinedFunction:
        raise click.ClickException(
            "the automation layer is not installed: run `onevault db automation install`"
        ) from None
    except psycopg.errors.InvalidParameterValue as exc:
        raise click.ClickException(exc.diag.message_primary or str(exc)) from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach PostgreSQL: {exc}") from None


@contextmanager
def _admin_connection() -> Iterator[psycopg.Connection]:
    """A connection for administrative commands."""
    settings = _settings()
    with _clear_errors(), connect(_database_url(settings), settings) as conn:
        yield conn


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> None:
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _progress_bar(total: int, label: str) -> AbstractContextManager[Any]:
    """A bar of `total` steps on stderr if it is a terminal (redirected output gets the result alone)."""
    if sys.stderr.isatty():
        return click.progressbar(length=total, label=label, show_pos=True, file=sys.stderr)
    return nullcontext()


@contextmanager
def _needs_current_code() -> Iterator[None]:
    """Database code older than the command (no `db upgrade` yet): say so, not the automation layer."""
    try:
        yield
    except psycopg.errors.UndefinedFunction as exc:
        raise click.ClickException(f"{exc.diag.message_primary}: run `onevault db upgrade`") from None


def _tenant_key(conn: psycopg.Connection, customer_id: str) -> bytes:
    tenant_hk = rebuild.tenant_key(conn, customer_id)
    if tenant_hk is None:
        raise click.ClickException(f"no tenant {customer_id!r} (see `onevault tenant list`)")
    return tenant_hk


def _rebuild_marts(conn: psycopg.Connection, customer_id: str, chunk_size: int) -> None:
    started = time.monotonic()
    tenant_hk = _tenant_key(conn, customer_id)
    with (
        _progress_bar(
            rebuild.visitor_count(conn, tenant_hk), f"Rebuilding the marts of {customer_id}"
        ) as progress,
        _needs_current_code(),
    ):
        for visitors in marts.rebuild(conn, tenant_hk, chunk_size):
            if progress is not None:
                progress.update(visitors)
    done = marts.counted(conn, tenant_hk)
    click.echo(
        f"rebuilt the marts of customer {customer_id}: {done.sessions} visits, {done.events} events"
        f" in {time.monotonic() - started:.1f} s"
    )


@click.group()
@click.version_option(__version__, prog_name="onevault")
def main() -> None:
    """OneVault Site Tracking: multi-tenant event tracking with a Data Vault pipeline."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the HTTP service (starting the embedded PostgreSQL when no database is configured)."""
    from onevault import server

    settings = _settings()
    with _clear_errors():
        url = _database_url(settings)
        # Here, not only in each worker's start-up: a database the code cannot run against is
        # refused in one line before any worker starts.
        migrations.upgrade(_keyed_conninfo(url, settings), progress=_progress)
    click.echo(f"PostgreSQL: {describe(url)}", err=True)
    # Every worker process reads its settings from the environment; hand them this database.
    os.environ["SYSTEM_DATABASE_URL"] = url
    get_settings.cache_clear()
    if workers > 1:
        # Each worker writes its metrics here; any worker answering /metrics aggregates them all.
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # uvicorn re-raises SIGTERM once it has shut down; exiting through SystemExit instead lets the
    # embedded PostgreSQL be stopped cleanly by its exit handler.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.raise_descriptor_limit(settings)
    app = "onevault.app:create_app"
    server.run(server.server_config(app, settings, host=host, port=port, factory=True, workers=workers))


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--to", "target", type=int, default=None, help="Stop at this migration number.")
def db_upgrade(target: int | None) -> None:
    """Apply pending migrations."""
    settings = _settings()
    with _clear_errors():
        done = migrations.upgrade(_keyed_conninfo(_database_url(settings), settings), target, _progress)
    click.echo(f"{len(done)} migration(s) applied" if done else "Database is up to date")


@db.command("rollback")
@click.option("--to", "target", type=int, default=None, help="Roll back every migration above this number.")
def db_rollback(target: int | None) -> None:
    """Roll back the latest migration (or all above --to)."""
    settings = _settings()
    with _clear_errors():
        # With the key: rolling 0010 back puts it in the database again.
        done = migrations.rollback(_keyed_conninfo(_database_url(settings), settings), target, _progress)
    click.echo(f"{len(done)} migration(s) rolled back" if done else "Nothing to roll back")


@db.command("status")
def db_status() -> None:
    """List migrations and files of database code, and whether each is applied."""
    settings = _settings()
    with _clear_errors():
        states, code = migrations.status(_conninfo(settings))
    _table(
        [
            {
                "version": f"{s.version:04d}",
                "name": s.name,
                "applied_at": s.applied_at or "pending",
                "note": s.note,
            }
            for s in states
        ],
        ["version", "name", "applied_at", "note"],
    )
    click.echo()
    _table(
        [
            {"file": f"sql/{c.path}", "layer": c.layer, "state": c.state, "applied_at": c.applied_at}
            for c in code
        ],
        ["file", "layer", "state", "applied_at"],
    )


@db.group("automation")
def db_automation() -> None:
    """The automation layer: the pipeline's named functions and view (deployment guide, rollback step 2)."""


@db_automation.command("remove")
def db_automation_remove() -> None:
    """Drop the automation layer; ingestion goes on, processing fails (non-critical) until `install`."""
    with _admin_connection() as conn:
        removed = dbcode.remove(conn, dbcode.AUTOMATION, _progress)
    objects = [o.qualified for f in removed for o in f.objects]
    click.echo(
        f"Automation layer removed ({', '.join(objects)}); it stays removed until `db automation install`"
    )


@db_automation.command("install")
def db_automation_install() -> None:
    """Install the automation layer again; background processing then works off the backlog."""
    with _admin_connection() as conn:
        dbcode.install(conn, dbcode.AUTOMATION, _progress)
    click.echo("Automation layer installed; pending events are processed by the background sweep")


@db_automation.command("status")
def db_automation_status() -> None:
    """Whether the automation layer is installed."""
    with _admin_connection() as conn:
        states = [s for s in dbcode.status(conn) if s.layer == dbcode.AUTOMATION]
    _table([{"file": f"sql/{s.path}", "state": s.state} for s in states], ["file", "state"])


@db.command("check")
def db_check() -> None:
    """Verify the pipeline's named functions and view exist (as GET /health/db does)."""
    with _admin_connection() as conn:
        present = {row[0] for row in conn.execute(MONITORING_QUERIES["automation_objects"])}
    states = [
        {"object": name, "status": "available" if name in present else "missing"}
        for name in AUTOMATION_OBJECTS
    ]
    _table(states, ["object", "status"])
    missing = [s["object"] for s in states if s["status"] == "missing"]
    if missing:
        raise click.ClickException(
            f"missing: {', '.join(missing)}; run `onevault db automation install` (or `onevault db upgrade`)"
        )


@main.group()
def tenant() -> None:
    """Tenants (customers)."""


@tenant.command("create")
@click.argument("customer_id")
@click.option("--name", default=None, help="Display name.")
def tenant_create(customer_id: str, name: str | None) -> None:
    """Register a customer."""
    with _admin_connection() as conn:
        created = store.create_tenant(conn, customer_id, name)
    if not created:
        raise click.ClickException(f"tenant {customer_id!r} already exists")
    click.echo(f"Tenant {customer_id} created")


@tenant.command("list")
def tenant_list() -> None:
    """List customers."""
    with _admin_connection() as conn:
        rows = [row | {"business_days": row["business_days"] or "keep"} for row in store.list_tenants(conn)]
    _table(
        rows,
        [
            "customer_id",
            "is_active",
            "live_tokens",
            "allowed_origins",
            "respects_dnt",
            "business_days",
            "created_at",
        ],
    )


@tenant.command("allow-origin")
@click.argument("customer_id")
@click.argument("origin")
def tenant_allow_origin(customer_id: str, origin: str) -> None:
    """Accept browser events from ORIGIN (https://shop.example.com, or https://*.example.com)."""
    with _admin_connection() as conn:
        canonical, changed = store.set_origin(conn, customer_id, origin, True)
    click.echo(
        f"{customer_id} accepts browser events from {canonical}"
        + ("" if changed else " (already allowed)")
        + "; other origins are refused within seconds"
    )


@tenant.command("disallow-origin")
@click.argument("customer_id")
@click.argument("origin")
def tenant_disallow_origin(customer_id: str, origin: str) -> None:
    """Stop accepting browser events from ORIGIN (with no origin left, any origin is accepted)."""
    with _admin_connection() as conn:
        canonical, changed = store.set_origin(conn, customer_id, origin, False)
        left = next(
            (t["allowed_origins"] for t in store.list_tenants(conn) if t["customer_id"] == customer_id), []
        )
    click.echo(f"{customer_id} no longer accepts {canonical}" + ("" if changed else " (it was not allowed)"))
    if not left:
        click.echo(f"{customer_id} has no allowed origins left: browser events from any origin are accepted")


@tenant.command("set-timezone")
@click.argument("customer_id")
@click.argument("time_zone")
@click.option(
    "--chunk-size",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Visitors per transaction.",
)
def tenant_set_timezone(customer_id: str, time_zone: str, chunk_size: int) -> None:
    """Count the customer's analytics in TIME_ZONE (an IANA name: Europe/Berlin, America/New_York, UTC).

    The customer's marts are rebuilt in the new zone (`onevault mart rebuild`).
    """
    with _admin_connection() as conn:
        canonical, changed = store.set_time_zone(conn, customer_id, time_zone)
        if not changed:
            click.echo(f"{customer_id} already counts in {canonical}")
            return
        click.echo(f"{customer_id} counts in {canonical} from now on; rebuilding its marts")
        _rebuild_marts(conn, customer_id, chunk_size)


@tenant.command("set-privacy")
@click.argument("customer_id")
@click.option(
    "--respect-dnt",
    "respect",
    required=True,
    type=click.Choice(["on", "off"]),
    help="on: requests with DNT: 1 or Sec-GPC: 1 are answered and nothing of them is stored.",
)
def tenant_set_privacy(customer_id: str, respect: str) -> None:
    """Whether the customer honours browsers' privacy signals (DNT, Global Privacy Control); on by default."""
    with _admin_connection() as conn:
        changed = store.set_privacy(conn, customer_id, respect == "on")
    state = (
        "stores nothing of requests with DNT: 1 or Sec-GPC: 1"
        if respect == "on"
        else "stores requests with DNT: 1 or Sec-GPC: 1 like any other"
    )
    click.echo(f"{customer_id} {state}" + ("; servers follow within seconds" if changed else " (no change)"))


def _business_days(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """`--business-days`: a number of days, at least 1, or `keep` (None)."""
    if value.strip().lower() == "keep":
        return None
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise click.BadParameter(f"{value!r} is neither a number of days (1 or more) nor keep")
    return days


@tenant.command("set-retention")
@click.argument("customer_id")
@click.option(
    "--business-days",
    required=True,
    metavar="N|keep",
    callback=_business_days,
    help="Delete the customer's sessions from the business layer and the marts N days after they end; "
    "keep: never (the default).",
)
def tenant_set_retention(customer_id: str, business_days: int | None) -> None:
    """How long the customer's sessions stay in the business layer and the marts after they end."""
    with _admin_connection() as conn:
        changed = store.set_retention(conn, customer_id, business_days)
    state = (
        "keeps its sessions in the business layer"
        if business_days is None
        else "deletes its sessions from the business layer and the marts "
        f"{_count(business_days, 'day')} after they end"
    )
    click.echo(f"{customer_id} {state}" + ("" if changed else " (no change)"))


@tenant.command("disable")
@click.argument("customer_id")
def tenant_disable(customer_id: str) -> None:
    """Disable a customer: its tokens are refused (403) within seconds."""
    with _admin_connection() as conn:
        store.set_tenant_active(conn, customer_id, False)
    click.echo(f"Tenant {customer_id} disabled")


@tenant.command("enable")
@click.argument("customer_id")
def tenant_enable(customer_id: str) -> None:
    """Re-enable a disabled customer."""
    with _admin_connection() as conn:
        store.set_tenant_active(conn, customer_id, True)
    click.echo(f"Tenant {customer_id} enabled")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.argument("customer_id")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(tokens.SCOPES),
    help="Repeat for several: track (ingest only), read (status, dashboards, stats, export), "
    "process (trigger), erase (erasing a person's data).",
)
@click.option(
    "--expires-in", "expires_in", type=float, default=None, help="Lifetime in days (default: none)."
)
@click.option("--description", default=None, help="What the token is for.")
def token_create(
    customer_id: str, scopes: tuple[str, ...], expires_in: float | None, description: str | None
) -> None:
    """Create a token; it is printed once, alone on the last line of standard output."""
    with _admin_connection() as conn:
        new = store.create_token(
            conn, customer_id, list(scopes), get_settings().token_env, expires_in, description
        )
    expiry = f", expires {new.expires_at:%Y-%m-%d %H:%M UTC}" if new.expires_at else ""
    click.echo(
        f"Token {new.token_id} for {customer_id} (scopes: {', '.join(sorted(set(scopes)))}{expiry}). "
        "Store it now: it cannot be shown again.",
        err=True,
    )
    click.echo(new.token)


@token.command("list")
@click.option("--customer-id", default=None, help="Only this customer's tokens.")
def token_list(customer_id: str | None) -> None:
    """List tokens (ids and scopes; the tokens themselves are never stored)."""
    with _admin_connection() as conn:
        rows = store.list_tokens(conn, customer_id)
    _table(
        rows, ["token_id", "customer_id", "scopes", "created_at", "expires_at", "revoked_at", "description"]
    )


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id (see `token list`); every server refuses it within seconds."""
    with _admin_connection() as conn:
        changed = store.revoke_token(conn, token_id)
    click.echo(f"Token {token_id} revoked" if changed else f"Token {token_id} was already revoked")


@main.group()
def vault() -> None:
    """The business vault."""


@vault.command("rebuild")
@click.option("--customer-id", required=True, help="The customer whose vault is rebuilt.")
@click.option(
    "--chunk-size",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Visitors rebuilt per transaction.",
)
def vault_rebuild(customer_id: str, chunk_size: int) -> None:
    """Recompute a customer's vault from staging. Visitor by visitor, safe while events arrive."""
    started = time.monotonic()
    visitors = events = 0
    with _admin_connection() as conn:
        tenant_hk = _tenant_key(conn, customer_id)
        total = rebuild.visitor_count(conn, tenant_hk)
        with _progress_bar(total, f"Rebuilding {customer_id}") as progress, _needs_current_code():
            for chunk in rebuild.rebuild(conn, tenant_hk, chunk_size):
                visitors += chunk.visitors
                events += chunk.events
                if progress is not None:
                    progress.update(chunk.visitors)
    click.echo(
        f"rebuilt {visitors} visitors ({events} events) of customer {customer_id}"
        f" in {time.monotonic() - started:.1f} s"
    )


@main.group()
def mart() -> None:
    """The information marts (analytics)."""


@mart.command("rebuild")
@click.option("--customer-id", required=True, help="The customer whose marts are rebuilt.")
@click.option(
    "--chunk-size",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Visitors per transaction.",
)
def mart_rebuild(customer_id: str, chunk_size: int) -> None:
    """Recompute a customer's marts from the business vault, visitor by visitor; safe while events arrive."""
    with _admin_connection() as conn:
        _rebuild_marts(conn, customer_id, chunk_size)


@main.group()
def visitor() -> None:
    """A customer's visitors (people)."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _operator() -> str:
    """Who runs this command, as erasure audit records name it: the OS user, else `cli`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@visitor.command("erase")
@click.argument("customer_id")
@click.option("--visitor-id", default=None, help="The visitor id (a client's, or a derived anon-… id).")
@click.option("--user-id", default=None, help="A user id: every visitor seen with it is erased.")
def visitor_erase(customer_id: str, visitor_id: str | None, user_id: str | None) -> None:
    """Erase a person's data from every layer: raw, staging, the vault and the marts.

    Every event of the visitor (or of every visitor seen with the user id) goes, pending ones
    included, with what the vault and the marts derived from them; sessions shared with other
    visitors are recomputed without them. One transaction; an audit record says what was erased,
    when and by whom, without the ids. Backups taken before still hold the data (see the README).
    """
    if (visitor_id is None) == (user_id is None):
        raise click.UsageError("give exactly one of --visitor-id and --user-id")
    with _admin_connection() as conn:
        tenant_hk = _tenant_key(conn, customer_id)
        with _needs_current_code():
            done = erasure.erase(
                conn,
                tenant_hk,
                visitor_id=visitor_id,
                user_id=user_id,
                erased_by=_operator(),
                record_source=erasure.CLI_RECORD_SOURCE,
            )
    _table(
        [{"table": table, "rows": rows} for table, rows in done.rows.items()],
        ["table", "rows"],
    )
    person = "visitor" if visitor_id is not None else "user id"
    click.echo(
        f"erased {_count(done.events, 'event')}, {_count(done.sessions, 'session')} and"
        f" {_count(done.visitors, 'visitor')} of this {person} from customer {customer_id}"
        f" (audit record {done.erasure_id})"
        if done.events
        else f"nothing of this {person} was stored for customer {customer_id}"
        f" (audit record {done.erasure_id})"
    )


def _is_regular_file(stream: IO[Any]) -> bool:
    """Whether `stream` is a file on disk (not a terminal, a pipe or an in-memory buffer)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


@contextmanager
def _export_target(output: Path | None) -> Iterator[IO[bytes]]:
    """Where the export goes: standard output, or `output` once complete (a failed export leaves no file)."""
    if output is None:
        yield sys.stdout.buffer
        return
    try:
        fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as sink:
            yield sink
        os.replace(partial, output)
    except BaseException:
        os.unlink(partial)
        raise


@main.command("export")
@click.argument("customer_id")
@click.option(
    "--from",
    "first_day",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day (UTC), YYYY-MM-DD.",
)
@click.option(
    "--to", "last_day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), included."
)
@click.option(
    "--layer",
    required=True,
    type=click.Choice(export_stream.LAYERS),
    help="raw: the events as received, by day received; business: the events in force, by day occurred.",
)
@click.option(
    "--format", "fmt", required=True, type=click.Choice(export_stream.FORMATS), help="JSON Lines or CSV."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
def export_events(
    customer_id: str, first_day: datetime, last_day: datetime, layer: str, fmt: str, output: Path | None
) -> None:
    """Export a customer's events of some days, streamed (constant memory), for use elsewhere."""
    started = time.monotonic()
    exported = 0
    with _admin_connection() as conn:
        try:
            export = export_stream.Export(
                _tenant_key(conn, customer_id), first_day.date(), last_day.date(), layer, fmt
            )
        except export_stream.ExportError as exc:
            raise click.UsageError(str(exc)) from None
        # A bar only when the data goes to a file: on a terminal it would mix with the data, and a
        # pipe's reader wants the data alone.
        to_file = output is not None or _is_regular_file(sys.stdout)
        total = export_stream.count(conn, export) if to_file and sys.stderr.isatty() else 0
        bar = _progress_bar(total, f"Exporting {customer_id}'s {layer} events") if total else nullcontext()
        with (
            _export_target(output) as sink,
            bar as progress,
            closing(export_stream.chunks(conn, export)) as chunks,
        ):
            try:
                for rows, data in chunks:
                    sink.write(data)
                    exported += rows
                    if progress is not None:
                        progress.update(rows)
                sink.flush()
            except BrokenPipeError:
                # The reader stopped (`| head`): nothing more to write, and nothing to flush at exit.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise click.exceptions.Exit(1) from None
    click.echo(
        f"exported {exported} events of customer {customer_id} ({layer} layer, {export.first_day} to "
        f"{export.last_day}) in {time.monotonic() - started:.1f} s",
        err=True,
    )


_COUNTS = ("processed", "loaded", "quarantined", "errors")


async def _process(
    url: str, settings: Settings, customer_id: str | None, retry_failed: bool
) -> tuple[dict[str, Any] | None, dict[str, PipelineResult]]:
    totals: dict[str, PipelineResult] = {}
    requeued = None
    async with open_pool(url, settings) as pool:
        runner = PipelineRunner.from_settings(pool, settings)
        if retry_failed:
            requeued = await runner.requeue_failed(customer_id)
        for tenant_id in [customer_id] if customer_id else await runner.due_tenants():
            report = functools.partial(_report_processed, tenant_id)
            totals[tenant_id] = await runner.process(tenant_id, until_done=True, progress=report)
    return requeued, totals


def _report_processed(customer_id: str, done: PipelineResult) -> None:
    _progress(f"{customer_id}: {done.processed} event(s) processed")


async def _follow(url: str, settings: Settings) -> None:
    """Background processing, as in a server, until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_pool(url, settings) as pool:
        runner = PipelineRunner.from_settings(pool, settings)
        runner.start()
        try:
            await stop.wait()
        finally:
            await runner.close()


@main.command()
@click.option("--customer-id", default=None, help="Only this customer (default: every customer).")
@click.option("--retry-failed", is_flag=True, help="First requeue failed (ERROR) and quarantined events.")
@click.option(
    "--follow",
    is_flag=True,
    help="Keep processing events as they arrive (every ONEVAULT_PIPELINE_SWEEP_SECONDS) until stopped.",
)
def process(customer_id: str | None, retry_failed: bool, follow: bool) -> None:
    """Process due events now, batch after batch, until none is left (or, with --follow, for good)."""
    settings = _settings()
    if follow:
        if customer_id or retry_failed:
            raise click.UsageError("--follow processes every customer; it takes no other option")
        with _clear_errors():
            url = _database_url(settings)
        click.echo(f"Processing events as they arrive in {describe(url)} (Ctrl-C to stop)", err=True)
        with _clear_errors():
            asyncio.run(_follow(url, settings))
        return
    with _clear_errors():
        try:
            requeued, totals = asyncio.run(
                _process(_database_url(settings), settings, customer_id, retry_failed)
            )
        except ProcessingFailed as exc:
            raise click.ClickException(f"processing failed: {exc}") from None
    if requeued is not None:
        click.echo(
            f"Requeued {requeued['requeued_errors']} failed and {requeued['requeued_quarantined']} "
            "quarantined event(s)"
        )
    if all(t.nothing_due for t in totals.values()):
        click.echo(NOTHING_DUE)
        return
    _table([{"customer_id": c, **t.counts()} for c, t in totals.items()], ["customer_id", *_COUNTS])


@main.command()
@click.option("--customer-id", default=None, help="Only this customer (default: every customer).")
def status(customer_id: str | None) -> None:
    """Show the pipeline status: pending work, quarantine, errors, totals and latency."""
    with _admin_connection() as conn:
        row = conn.execute(MONITORING_QUERIES["pipeline_status"], {"customer_id": customer_id}).fetchone()
    state: dict[str, Any] = row[0] if row else {}
    _table([{"metric": k, "value": v} for k, v in state.items()], ["metric", "value"])


@main.group("maintenance")
def maintenance_group() -> None:
    """The database's upkeep: day partitions, retention, idempotency keys."""


@maintenance_group.command("run")
def maintenance_run() -> None:
    """Do now what the service's scheduler does every ONEVAULT_MAINTENANCE_SECONDS.

    Makes the raw partitions of today and of the next days, drops those past
    ONEVAULT_RETENTION_RAW_DAYS (keeping any that still hold unprocessed events), deletes staged
    events past ONEVAULT_RETENTION_STAGING_DAYS, forgets idempotency keys older than
    ONEVAULT_IDEMPOTENCY_DAYS and deletes what the customers' business-layer retention
    (`tenant set-retention`) has expired.
    """
    settings = _settings()
    with _clear_errors():
        report = maintenance.run(_conninfo(settings), maintenance.Retention.of(settings))
    if report is None:
        raise click.ClickException("another process is doing the maintenance now; try again in a moment")
    for name, holding in report.held.items():
        click.echo(f"kept {name} past retention: {_count(holding, 'event')} not processed yet")
    _table(
        [
            {"what": "days of partitions made", "count": report.days_made},
            {"what": "partitions dropped (raw and staging)", "count": len(report.dropped)},
            {"what": "idempotency keys expired", "count": report.keys_expired},
            {"what": "sessions deleted (business retention)", "count": report.sessions_expired},
            {"what": "events deleted (business retention)", "count": report.events_expired},
        ],
        ["what", "count"],
    )
    for name in report.dropped:
        click.echo(f"dropped {name}")


main.add_command(smoke_test)
