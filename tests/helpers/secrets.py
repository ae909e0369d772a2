"""Looking for a secret in every column of the database: tokens must never be stored in clear."""

from __future__ import annotations

import psycopg
from psycopg import sql


def occurrences(conn: psycopg.Connection, needle: str) -> list[str]:
    """Every `schema.table.column` (tables and views) of every schema of the database but the system's
    whose text or hex form contains `needle`."""
    columns = conn.execute(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "WHERE c.table_schema !~ '^pg_' AND c.table_schema <> 'information_schema' ORDER BY 1, 2, 3"
    ).fetchall()
    assert columns, "no columns to scan"
    found = []
    for schema, table, column, data_type in columns:
        col = sql.Identifier(column)
        forms = [sql.SQL("{}::text").format(col)]
        if data_type == "bytea":
            forms.append(sql.SQL("encode({}, 'hex')").format(col))
            forms.append(sql.SQL("encode({}, 'escape')").format(col))
        for form in forms:
            query = sql.SQL("SELECT count(*) FROM {}.{} WHERE strpos(lower({}), lower(%s)) > 0").format(
                sql.Identifier(schema), sql.Identifier(table), form
            )
            row = conn.execute(query, (needle,)).fetchone()
            if row and row[0]:
                found.append(f"{schema}.{table}.{column}")
    return found
