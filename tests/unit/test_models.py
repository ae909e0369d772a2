"""Event validation and settings: the user-visible contract of the wire format (no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from onevault.config import Settings, get_settings
from onevault.ingest.models import InvalidEvent, check_storable, validate_event


def test_defaults() -> None:
    """An empty object is a page_view with every optional field absent."""
    event = validate_event({})
    assert event.event_type == "page_view"
    assert event.page_url is None
    assert event.event_data is None
    assert event.event_id is None
    assert event.timestamp is None


def test_null_event_type_means_page_view() -> None:
    """`event_type: null` is read as the default page_view."""
    assert validate_event({"event_type": None}).event_type == "page_view"


def test_known_fields_and_unknown_fields_are_kept() -> None:
    """Known fields are read as given and unknown fields are kept verbatim."""
    body = {
        "event_type": "checkout.step:2",
        "page_url": "https://x.test/p",
        "event_data": {"a": [1, None], "session_id": "s"},
        "event_id": "e" * 128,
        "timestamp": 1700000000000,
        "sent_at": "2024-01-01T00:00:00Z",
        "custom": {"nested": True},
    }
    event = validate_event(body)
    assert event.event_type == "checkout.step:2"
    assert event.event_data == {"a": [1, None], "session_id": "s"}
    assert event.timestamp == 1700000000000
    assert event.model_extra == {"custom": {"nested": True}}
    assert event.model_dump(exclude_none=True) == body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_type": 1}, "event_type"),
        ({"event_type": "bad type"}, "event_type"),
        ({"event_type": "x" * 65}, "event_type"),
        ({"event_type": ""}, "event_type"),
        ({"page_url": 3}, "page_url"),
        ({"event_data": [1]}, "event_data"),
        ({"event_data": "text"}, "event_data"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"event_id": 5}, "event_id"),
        ({"session_id": 5}, "session_id"),
        ({"visitor_id": ""}, "visitor_id"),
        ({"user_id": ["u"]}, "user_id"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": {"at": 1}}, "timestamp"),
        ({"sent_at": [1]}, "sent_at"),
        ({"referrer": 1}, "referrer"),
        ({"page_title": False}, "page_title"),
    ],
)
def test_wrong_types_are_rejected_naming_the_field(body: dict[str, object], field: str) -> None:
    """A field of the wrong type or shape is rejected with a summary naming that field."""
    with pytest.raises(InvalidEvent) as excinfo:
        validate_event(body)
    assert excinfo.value.summary.startswith(field)
    assert field in str(excinfo.value)
    assert excinfo.value.errors
    assert all(e["loc"][0] == field for e in excinfo.value.errors)


def test_every_bad_field_is_reported() -> None:
    """Several bad fields are all named in the summary."""
    with pytest.raises(InvalidEvent) as excinfo:
        validate_event({"event_type": 1, "page_url": 2})
    assert "event_type" in excinfo.value.summary
    assert "page_url" in excinfo.value.summary


@pytest.mark.parametrize("body", [[], "text", 1, None, [{"event_type": "x"}]])
def test_non_object_is_rejected(body: object) -> None:
    """An event that is not a JSON object is rejected."""
    with pytest.raises(InvalidEvent, match="JSON object"):
        validate_event(body)


@pytest.mark.parametrize(
    "value", ["\x00", "a\x00b", "\\\x00", "\\\\\x00"], ids=["nul", "inner-nul", "bs-nul", "2bs-nul"]
)
def test_check_storable_rejects_nul(value: str) -> None:
    """A serialised event holding an escaped NUL (`\\u0000`) is refused."""
    serialised = json.dumps({"a": value})
    assert "\\u0000" in serialised
    with pytest.raises(InvalidEvent, match="NUL"):
        check_storable(serialised)
    with pytest.raises(InvalidEvent, match="NUL"):
        check_storable(json.dumps({value: 1}))


@pytest.mark.parametrize("value", ["\\u0000", "\\\\u0000", "u0000", "plain", "\u00e9\u4e2d"])
def test_check_storable_accepts_text_that_only_looks_like_nul(value: str) -> None:
    """A backslash followed by the text `u0000` (JSON `"\\\\u0000"`) is storable."""
    check_storable(json.dumps({"a": value}))
    check_storable(json.dumps({"a": value}, ensure_ascii=False))


def test_check_storable_on_raw_json_text() -> None:
    """The check works on the JSON text as received: escaped backslash + u0000 passes, \\u0000 fails."""
    check_storable(r'{"a": "\\u0000"}')
    with pytest.raises(InvalidEvent):
        check_storable(r'{"a": "\u0000"}')
    with pytest.raises(InvalidEvent):
        check_storable(r'{"a": "\\\u0000"}')


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OneVault-related variables from the surrounding environment."""
    for name in ("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL", "LOG_LEVEL", "ONEVAULT_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ONEVAULT_MAX_EVENT_BYTES", "ONEVAULT_TOKEN_ENV", "ONEVAULT_RATE_LIMIT_PER_SECOND"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    """Without environment variables the documented defaults apply."""
    settings = Settings()
    assert settings.database_url is None
    assert settings.log_level == "INFO"
    assert settings.max_event_bytes == 64 * 1024
    assert settings.token_env == "prod"


def test_settings_read_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ONEVAULT_* variables, LOG_LEVEL (any case) and SYSTEM_DATABASE_URL are read."""
    clean_env.setenv("ONEVAULT_MAX_EVENT_BYTES", "2048")
    clean_env.setenv("ONEVAULT_RATE_LIMIT_PER_SECOND", "0")
    clean_env.setenv("ONEVAULT_DATA_DIR", str(tmp_path))
    clean_env.setenv("LOG_LEVEL", "debug")
    clean_env.setenv("SYSTEM_DATABASE_URL", "postgresql://u@db.example/onevault")
    settings = Settings()
    assert settings.max_event_bytes == 2048
    assert settings.rate_limit_per_second == 0
    assert settings.data_dir == tmp_path
    assert settings.log_level == "DEBUG"
    assert settings.database_url == "postgresql://u@db.example/onevault"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYSTEM_DATABASE_URL", "mysql://u@db/x"),
        ("SYSTEM_DATABASE_URL", "sqlite:///x.db"),
        ("LOG_LEVEL", "verbose"),
        ("ONEVAULT_MAX_EVENT_BYTES", "100"),
        ("ONEVAULT_MAX_EVENT_BYTES", "lots"),
        ("ONEVAULT_TOKEN_ENV", "Prod_1"),
    ],
)
def test_settings_reject_bad_values(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    """An invalid setting is refused when the settings are read, naming the problem."""
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    if name == "SYSTEM_DATABASE_URL":
        assert "postgresql://" in str(excinfo.value)


def test_get_settings_is_cached(clean_env: pytest.MonkeyPatch) -> None:
    """get_settings reads the environment once until its cache is cleared."""
    get_settings.cache_clear()
    try:
        clean_env.setenv("ONEVAULT_MAX_EVENT_BYTES", "4096")
        first = get_settings()
        clean_env.setenv("ONEVAULT_MAX_EVENT_BYTES", "8192")
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().max_event_bytes == 8192
    finally:
        get_settings.cache_clear()
