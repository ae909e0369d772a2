"""The pipeline's SQL helpers for URLs and query strings, case by case."""

from __future__ import annotations

import psycopg

URL_PARTS = {
    "HTTPS://Example.COM/Some/Path?utm_source=news%20letter&x=1#frag": [
        "HTTPS",
        "Example.COM",
        "/Some/Path",
        "utm_source=news%20letter&x=1",
    ],
    "  http://a.test  ": ["http", "a.test", "", None],
    "http://a.test?x": ["http", "a.test", "", "x"],
    "http://a.test#f": ["http", "a.test", "", None],
    "http://a.test?": ["http", "a.test", "", ""],
    "http://a.test/?": ["http", "a.test", "/", ""],
    "http://a.test/p?q=1#f?g": ["http", "a.test", "/p", "q=1"],
    "http://a.test/p#f?x=1": ["http", "a.test", "/p", None],
    "http://u:p@a.test:8080/x": ["http", "u:p@a.test:8080", "/x", None],
    "http://a.test/p?q r": ["http", "a.test", "/p", "q r"],
    "https://a.test/r?to=https://c.test/e": ["https", "a.test", "/r", "to=https://c.test/e"],
    "http://[::1]:80/x": ["http", "[::1]:80", "/x", None],
    "http://a.test/?x\ny": ["http", "a.test", "/", "x\ny"],
    "http://a.test/p%20q": ["http", "a.test", "/p%20q", None],
}
NOT_URLS = [
    "http://a.test/p q",
    "ftp://a.test",
    "http:/a.test",
    "http://",
    "http:///x",
    "http://a b/",
    "",
    "x",
]


def test_url_parts(conn: psycopg.Connection) -> None:
    urls = [*URL_PARTS, *NOT_URLS]
    rows = conn.execute("SELECT u, util.url_parts(u) FROM unnest(%s::text[]) AS u", [urls]).fetchall()
    assert dict(rows) == URL_PARTS | dict.fromkeys(NOT_URLS)
    row = conn.execute("SELECT util.url_parts(NULL)").fetchone()
    assert row == (None,)


def test_query_param(conn: psycopg.Connection) -> None:
    cases = [
        ("utm_source=a%20b&utm_medium=x+y", "utm_source", "a b"),
        ("utm_source=a%20b&utm_medium=x+y", "utm_medium", "x y"),
        ("xutm_source=no&utm_source=yes", "utm_source", "yes"),
        ("utm_source=&b=1", "utm_source", ""),
        ("utm_source=first&utm_source=second", "utm_source", "first"),
        ("b=1", "utm_source", None),
        (None, "utm_source", None),
        ("utm_source=%ff", "utm_source", None),
    ]
    for query, name, expected in cases:
        row = conn.execute("SELECT util.query_param(%s, %s)", [query, name]).fetchone()
        assert row == (expected,), (query, name)


def test_referrer_class(conn: psycopg.Connection) -> None:
    cases = {
        "google.com": "search",
        "www.google.co.uk": "search",
        "google": "other",
        "mygoogle.com": "other",
        "search.brave.com": "search",
        "brave.com": "other",
        "yahoo.co.jp": "search",
        "facebook.com": "social",
        "m.facebook.com": "social",
        "notfacebook.com": "other",
        "facebook.com.evil.test": "other",
        "t.co": "social",
        "news.ycombinator.com": "social",
        "a.news.ycombinator.com": "social",
        "ycombinator.com": "other",
        "xnews.ycombinator.com": "other",
        "shop.example.com": "internal",
        "localhost": "other",
        "": "direct",
    }
    rows = conn.execute(
        "SELECT h, staging.referrer_class(h, 'shop.example.com') FROM unnest(%s::text[]) AS h", [list(cases)]
    ).fetchall()
    assert dict(rows) == cases
    row = conn.execute("SELECT staging.referrer_class(NULL, 'shop.example.com')").fetchone()
    assert row == ("direct",)
