"""What a database's catalog holds in OneVault's schemas, in a form two databases can be compared by.

Partitions are left out (which days exist depends on when and from what a database was made);
the partitioned tables, their keys, columns, indexes and constraints are compared.
"""

from __future__ import annotations

import psycopg

PRODUCT_SCHEMAS = ("raw", "staging", "business", "api", "auth", "util", "privacy")

# Each query returns sorted rows of text describing one kind of object of the product's schemas.
_QUERIES = {
    "schemas": """
        SELECT nspname || ': ' || coalesce(obj_description(oid, 'pg_namespace'), '')
        FROM pg_namespace WHERE nspname = ANY(%(s)s) ORDER BY 1""",
    "columns": """
        SELECT c.table_schema || '.' || c.table_name || '.' || c.column_name || ' #' || c.ordinal_position
               || ' ' || c.data_type || ' null=' || c.is_nullable
               || ' default=' || coalesce(c.column_default, '') || ' identity=' || c.is_identity
        FROM information_schema.columns c
        WHERE c.table_schema = ANY(%(s)s)
          AND NOT (SELECT r.relispartition FROM pg_class r
                   WHERE r.oid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass)
        ORDER BY 1""",
    "relations": """
        SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' '
               || coalesce(obj_description(c.oid, 'pg_class'), '') || ' acl=' || coalesce(c.relacl::text, '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(s)s) AND NOT c.relispartition ORDER BY 1""",
    "partition_keys": """
        SELECT n.nspname || '.' || c.relname || ' ' || pg_get_partkeydef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(s)s) AND c.relkind = 'p' ORDER BY 1""",
    "indexes": """
        SELECT pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(s)s) AND NOT c.relispartition ORDER BY 1""",
    "constraints": """
        SELECT n.nspname || '.' || r.relname || ' ' || x.conname || ' ' || pg_get_constraintdef(x.oid)
        FROM pg_constraint x JOIN pg_class r ON r.oid = x.conrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE n.nspname = ANY(%(s)s) AND NOT r.relispartition ORDER BY 1""",
    "column_comments": """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname || ': ' || d.description
        FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
        WHERE d.objsubid > 0 AND n.nspname = ANY(%(s)s) AND NOT c.relispartition ORDER BY 1""",
    "functions": """
        SELECT pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(s)s) ORDER BY p.oid::regprocedure::text""",
    "views": """
        SELECT n.nspname || '.' || c.relname || ' AS ' || pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'v' AND n.nspname = ANY(%(s)s) ORDER BY 1""",
}


def snapshot(url: str) -> dict[str, list[str]]:
    """Schemas, tables and their columns, indexes, constraints, comments, grants, functions and views."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            kind: [r[0] for r in conn.execute(query.encode(), {"s": list(PRODUCT_SCHEMAS)}).fetchall()]
            for kind, query in _QUERIES.items()
        }


def differences(a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """Per kind of object, what only `a` has and what only `b` has (empty when the catalogs are equal)."""
    found = {}
    for kind in a:
        only_a = sorted(set(a[kind]) - set(b[kind]))
        only_b = sorted(set(b[kind]) - set(a[kind]))
        if only_a or only_b or a[kind] != b[kind]:
            found[kind] = (only_a, only_b)
    return found
