"""Named SQL statements kept in `.sql` files beside the code that runs them."""

from __future__ import annotations

import re
from importlib import resources

from psycopg import sql

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def load(package: str, filename: str) -> dict[str, sql.SQL]:
    """Every statement of `filename` in `package`, by the name in its `-- name: x` header."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    statements: dict[str, sql.SQL] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in statements:
            raise ValueError(f"{filename}: statement {name!r} is defined twice")
        statements[name] = sql.SQL(body.strip().rstrip(";"))
    return statements
