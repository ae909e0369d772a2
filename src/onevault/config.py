"""The one typed settings object: every environment variable the service reads is declared here."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("onevault"))


class Settings(BaseSettings):
    """Service settings, read from `SYSTEM_DATABASE_URL`, `LOG_LEVEL` and `ONEVAULT_*` variables."""

    model_config = SettingsConfigDict(env_prefix="ONEVAULT_", extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL"),
        description="PostgreSQL to use; when unset an embedded server is started in data_dir.",
    )
    read_database_url: str | None = Field(
        default=None,
        description=(
            "A streaming replica of the database (postgresql:// URL) that serves the stats API and the "
            "dashboard's data, in a second pool sized like the first; never migrated. When unset they "
            "read the primary."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "ONEVAULT_LOG_LEVEL")
    )
    log_format: Literal["text", "json"] = "text"
    data_dir: Path = Field(default_factory=_default_data_dir)
    # The installation's secret (64 hex digits): it keys client IP hashes and derived visitor ids,
    # and never enters the database. When unset: the file secret.key in data_dir, created at the
    # first start (readable by its owner only). See docs/privacy.md.
    secret_key: SecretStr | None = None
    # How long a derived visitor id lasts: a new random salt every UTC day, every month, or never
    # (the ids of 0.4.0: the same IP and browser are one visitor for ever).
    visitor_salt_rotation: Literal["daily", "monthly", "never"] = "daily"

    token_env: str = Field(default="prod", pattern=r"^[a-z0-9]{1,16}$")
    auth_cache_seconds: float = Field(default=2.0, ge=0, le=5)
    # Failed authentications a client address may make (per second, and at once) before its
    # requests with uncached tokens are refused (429) without a database query; 0: no limit.
    auth_failures_per_second: float = Field(default=10.0, ge=0)
    auth_failure_burst: int = Field(default=100, ge=1)

    # A stats request (one query or a batch) still running after this long is cancelled and answered
    # 504: no caller holds a connection of the read pool and a core for minutes.
    stats_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Read from the facts (filtered panels), a date range that more sessions than this start in is
    # counted over a sample of visitors expected to hold about this many, and its counts scaled up
    # (the answer's meta.sample_percent says how much was read); 0: always all of them. The
    # unfiltered dashboard and a filter's own panel read the rollups, which are never sampled.
    stats_sample_sessions: int = Field(default=300_000, ge=0)

    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    db_timeout_seconds: float = Field(default=1.5, gt=0)
    retry_after_seconds: int = Field(default=2, ge=1)
    # While PostgreSQL is unreachable, requests are answered 503 at once; one request every this
    # many seconds tries a new connection, and the first that succeeds restores service.
    db_probe_seconds: float = Field(default=0.25, gt=0, le=5)

    writer_batch_size: int = Field(default=500, ge=1)
    writer_concurrency: int = Field(default=2, ge=1)

    pipeline_batch_size: int = Field(default=1000, ge=1, le=100_000)
    pipeline_sweep_seconds: float = Field(default=2.0, gt=0)
    pipeline_coalesce_seconds: float = Field(default=0.1, ge=0, le=5)
    pipeline_parallelism: int = Field(default=1, ge=1, le=8)
    # False on ingestion-only nodes: stored events are then processed by `onevault process --follow`
    # (or by servers elsewhere); /api/v1/track still processes its own event before answering.
    pipeline_background: bool = True
    # While this process's ingestion is saturated, background runs rest between batches (up to this
    # much delay of the oldest due event; 0: never).
    pipeline_yield_seconds: float = Field(default=30.0, ge=0)
    # Under live traffic, the least time between two refreshes of a customer's information marts by
    # one process's background processing: asks arriving meanwhile are answered by one refresh at its
    # end, so live traffic pays a refresh — whose cost follows the sessions it touches, not their new
    # events — once per interval instead of once per small batch (a backlog's refreshes are spaced by
    # their own threshold).
    marts_refresh_seconds: float = Field(default=5.0, ge=0, le=60)

    # Retention of the raw and staging layers, in days after the day (UTC) an event was stored
    # (unset or `keep`: kept for ever). The scheduler drops a day's raw partition once its last day
    # is that old and all its events are processed, and deletes staged events that old once loaded
    # (docs/retention.md). Staging keeps at least 32 days: events come up to 30 days late, and
    # deriving their sessions reads the staged events around them.
    retention_raw_days: int | None = Field(default=None, ge=1)
    retention_staging_days: int | None = Field(default=None, ge=32)
    # How long an event_id is remembered after the day its event was stored: a copy sent within
    # this window is answered `"duplicate": true`, a copy sent later is stored again.
    idempotency_days: int = Field(default=30, ge=1)
    # How often the scheduler makes the next days' partitions and applies retention (also at start).
    maintenance_seconds: float = Field(default=3600.0, gt=0)

    max_event_bytes: int = Field(default=64 * 1024, ge=1024)
    batch_max_events: int = Field(default=1000, ge=1)
    batch_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)

    rate_limit_per_second: float = Field(default=5000.0, ge=0)
    rate_limit_burst: int = Field(default=10000, ge=1)

    # The HTTP edge, per server process: a client over these limits is disconnected (431 for
    # headers too large, 503 past max_connections) without costing the others memory or time.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    keepalive_seconds: int = Field(default=5, ge=1)
    max_connections: int = Field(default=4096, ge=1)
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: addresses or
    # networks, comma-separated (`*`: any). None by default: the peer's address is the client's.
    forwarded_allow_ips: Annotated[tuple[str, ...], NoDecode] = ()

    # Web origins whose pages may call the read routes (status, dashboard, process), comma-separated
    # (`*`: any). The tracking routes are open to every origin (each customer restricts its own).
    cors_read_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("database_url", "read_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("retention_raw_days", "retention_staging_days", mode="before")
    @classmethod
    def _keep_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "keep") else value

    @field_validator("secret_key")
    @classmethod
    def _hex_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64,}", value.get_secret_value()):
            raise ValueError("must be at least 64 hex digits (e.g. from `openssl rand -hex 32`)")
        return value

    @field_validator("cors_read_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
        return value

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _proxy_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, tuple | list):
            for part in value:
                if part != "*":
                    ipaddress.ip_network(part, strict=False)  # ValueError: not an address or network
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment."""
    return Settings()
