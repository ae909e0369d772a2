"""Where the time of a PL/pgSQL function goes: its statements explained one by one, its callees timed.

The embedded PostgreSQL ships without `auto_explain`, so the statements of a function body are
taken from `pg_proc`, its variables bound as query parameters, and each is explained (and so
executed) in order, each in a savepoint of the caller's transaction, which should roll back.
`SELECT … INTO v_x` statements are also run to give `v_x` its value for the statements after.
`function_times` adds what `track_functions` measures: calls and time of every function called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

_START = re.compile(r"(?im)^[ \t]*(WITH|INSERT|UPDATE|DELETE|SELECT|RETURN)\b")
_SELECT_INTO = re.compile(r"(?i)\bINTO\s+([pv]_\w+)(?:\s*,\s*[pv]_\w+)*")
_VARIABLE = re.compile(r"\b[pv]_[a-z0-9_]+\b")
_COMMENT = re.compile(r"--[^\n]*")
_DECLARATION = re.compile(r"(?im)^\s*([pv]_\w+)\s+([^;:=]+?)\s*(?::=|\bDEFAULT\b|;)")
_TARGET = re.compile(r"(?is)\b(INSERT\s+INTO|(?<!FOR )UPDATE|DELETE\s+FROM)\s+([\w.]+)")

Variables = dict[str, tuple[str, Any]]


@dataclass
class Explained:
    """One explained statement: where it comes from, its times and its plan."""

    label: str
    statement: str
    execution_ms: float = 0.0
    planning_ms: float = 0.0
    triggers: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """Times, trigger times and the nodes that took longest, for the results file."""
        return {
            "statement": self.label,
            "execution_ms": round(self.execution_ms, 1),
            "planning_ms": round(self.planning_ms, 1),
            "triggers": [
                {"name": t.get("Trigger Name"), "calls": t.get("Calls"), "ms": round(t.get("Time", 0.0), 1)}
                for t in self.triggers
            ],
            "top_nodes": [f"{ms:8.1f} ms  {text}" for ms, text in top_nodes(self.plan)],
            "plan": render(self.plan) if self.plan else [],
            "error": self.error,
        }


def _end_of_statement(text: str, start: int) -> int:
    depth = 0
    quoted = False
    for i in range(start, len(text)):
        ch = text[i]
        if quoted:
            quoted = ch != "'"
        elif ch == "'":
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ";" and depth == 0:
            return i
    return len(text)


@dataclass
class Body:
    """A PL/pgSQL function's statements (each with the variable it selects INTO) and declared types."""

    statements: list[tuple[str, str | None]]
    declared: dict[str, str]


def function_body(conn: psycopg.Connection[Any], schema: str, name: str) -> Body:
    """The SQL statements of a PL/pgSQL function's body and the types of its DECLAREd variables.

    `RETURN <expression with a subquery>` is given as `SELECT <expression>`.
    """
    row = conn.execute(
        "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND p.proname = %s",
        [schema, name],
    ).fetchone()
    if row is None:
        return Body([], {})
    source = _COMMENT.sub("", row[0])
    head, _, body = source.partition("BEGIN")
    declared = {m.group(1): m.group(2).strip() for m in _DECLARATION.finditer(head)}
    statements: list[tuple[str, str | None]] = []
    end = 0
    for match in _START.finditer(body):
        if match.start() < end:
            continue
        end = _end_of_statement(body, match.start())
        text = body[match.start() : end].strip()
        if match.group(1).upper() == "RETURN":
            expression = text[len("RETURN") :].strip()
            if expression.upper().startswith("QUERY") or "SELECT" not in expression.upper():
                continue
            text = "SELECT " + expression
        into = _SELECT_INTO.search(text)
        statements.append((_SELECT_INTO.sub("", text), into.group(1) if into else None))
    return Body(statements, declared)


def label(function: str, index: int, statement: str) -> str:
    """A short name: the function, the statement's position and what it writes."""
    target = _TARGET.search(statement)
    what = (
        f"{target.group(1).split()[0].upper()} {target.group(2)}" if target else statement.split()[0].upper()
    )
    return f"{function} #{index} {what}"


def explain_query(
    conn: psycopg.Connection[Any], name: str, query: sql.Composable, params: dict[str, Any], keep: bool = True
) -> Explained:
    """EXPLAIN (ANALYZE, BUFFERS) a query with its parameters in a savepoint (rolled back unless `keep`)."""
    result = Explained(name, query.as_string(conn))
    try:
        with conn.transaction(force_rollback=not keep):
            row = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + query, params).fetchone()
    except psycopg.Error as exc:
        result.error = f"{type(exc).__name__}: {exc.diag.message_primary or exc}"
        return result
    assert row is not None
    document = row[0][0]
    result.plan = document["Plan"]
    result.execution_ms = float(document.get("Execution Time", 0.0))
    result.planning_ms = float(document.get("Planning Time", 0.0))
    result.triggers = list(document.get("Triggers", []))
    return result


def _bind(statement: str, variables: Variables) -> tuple[sql.SQL, dict[str, Any]] | str:
    """The statement with its variables as typed placeholders and their values, or what is missing."""
    used = sorted(set(_VARIABLE.findall(statement)))
    missing = [v for v in used if v not in variables]
    if missing:
        return f"not explained: unknown variable(s) {', '.join(missing)}"
    # A literal % in the function's text must not be taken for a placeholder.
    text = _VARIABLE.sub(
        lambda m: f"%({m.group(0)})s::{variables[m.group(0)][0]}", statement.replace("%", "%%")
    )
    return sql.SQL(text), {v: variables[v][1] for v in used}


def explain_function(
    conn: psycopg.Connection[Any], schema: str, name: str, variables: Variables
) -> list[Explained]:
    """Every statement of a function, explained in order (each one executes: roll back afterwards).

    A statement `… INTO v_x` is explained in a savepoint rolled back, then run once for real,
    and its value becomes that of `v_x` (typed as `variables` or the DECLARE section says).
    """
    body = function_body(conn, schema, name)
    explained: list[Explained] = []
    for i, (statement, into) in enumerate(body.statements, 1):
        name_i = label(f"{schema}.{name}", i, statement)
        bound = _bind(statement, variables)
        if isinstance(bound, str):
            explained.append(Explained(name_i, statement, error=bound))
            continue
        query, params = bound
        kind = variables[into][0] if into in variables else body.declared.get(into or "")
        result = explain_query(conn, name_i, query, params, keep=kind is None)
        result.statement = statement
        explained.append(result)
        if into is not None and kind is not None and result.error is None:
            with conn.transaction():
                row = conn.execute(query, params).fetchone()
            variables[into] = (kind, row[0] if row else None)
    return explained


def function_times(conn: psycopg.Connection[Any], call: Callable[[], object]) -> list[dict[str, Any]]:
    """Calls, total and self time of every SQL and PL/pgSQL function `call()` ran (not inlined ones).

    Uses `track_functions = 'all'` and the transaction's own statistics, so `call` must run in the
    caller's open transaction.
    """
    conn.execute("SET LOCAL track_functions = 'all'")
    call()
    rows = conn.execute(
        "SELECT schemaname || '.' || funcname, calls, round(total_time::numeric, 1), "
        "round(self_time::numeric, 1) FROM pg_stat_xact_user_functions ORDER BY self_time DESC"
    ).fetchall()
    return [{"function": r[0], "calls": r[1], "total_ms": float(r[2]), "self_ms": float(r[3])} for r in rows]


def _node_text(node: dict[str, Any]) -> str:
    parts = [node.get("Node Type", "?")]
    if "Index Name" in node:
        parts.append(f"using {node['Index Name']}")
    if "Relation Name" in node:
        parts.append(f"on {node.get('Schema', '')}.{node['Relation Name']}".replace(" .", " "))
    if "CTE Name" in node:
        parts.append(f"CTE {node['CTE Name']}")
    if "Subplan Name" in node:
        parts.append(f"[{node['Subplan Name']}]")
    if "Function Name" in node:
        parts.append(f"function {node['Function Name']}")
    return " ".join(parts)


def _annotate(node: dict[str, Any], processes: int = 1) -> None:
    """Give each node its wall time: under a Gather, loops are spread over the parallel processes."""
    loops = max(int(node.get("Actual Loops", 1)), 1)
    node["_ms"] = float(node.get("Actual Total Time", 0.0)) * loops / processes
    if node.get("Node Type") in ("Gather", "Gather Merge"):
        processes = int(node.get("Workers Launched", 0)) + 1
    for child in node.get("Plans", []):
        _annotate(child, processes)


def _node_ms(node: dict[str, Any]) -> float:
    if "_ms" not in node:
        _annotate(node)
    return float(node["_ms"])


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _is_cte_plan(node: dict[str, Any]) -> bool:
    return str(node.get("Subplan Name", "")).startswith("CTE ")


def top_nodes(plan: dict[str, Any], limit: int = 5) -> list[tuple[float, str]]:
    """The plan nodes with the most time of their own (total minus their children's).

    A CTE is run by the CTE Scans reading it, so its time is in theirs: it is taken out of the
    scans (in proportion) and not out of the node the CTE hangs from.
    """
    ctes: dict[str, float] = {}
    scans: dict[str, float] = {}
    nodes: list[dict[str, Any]] = []

    def collect(node: dict[str, Any]) -> None:
        nodes.append(node)
        if _is_cte_plan(node):
            ctes[str(node["Subplan Name"])[4:]] = _node_ms(node)
        if node.get("Node Type") == "CTE Scan":
            scans[node["CTE Name"]] = scans.get(node["CTE Name"], 0.0) + _node_ms(node)
        for child in node.get("Plans", []):
            collect(child)

    if not plan:
        return []
    _annotate(plan)
    collect(plan)
    found: list[tuple[float, str]] = []
    for node in nodes:
        own = _node_ms(node) - sum(_node_ms(c) for c in node.get("Plans", []) if not _is_cte_plan(c))
        if node.get("Node Type") == "CTE Scan" and scans.get(node["CTE Name"]):
            own -= ctes.get(node["CTE Name"], 0.0) * _node_ms(node) / scans[node["CTE Name"]]
        rows, loops = _number(node.get("Actual Rows", 0)), node.get("Actual Loops", 0)
        found.append((max(own, 0.0), f"{_node_text(node)} (rows={rows} loops={loops})"))
    return sorted(found, key=lambda f: -f[0])[:limit]


def render(plan: dict[str, Any]) -> list[str]:
    """A compact text tree of an analysed plan: node, rows, loops, time, buffers."""
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        detail = [
            f"rows={_number(node.get('Actual Rows', 0))}",
            f"loops={node.get('Actual Loops', 0)}",
            f"time={_node_ms(node):.1f}ms",
            f"hit={node.get('Shared Hit Blocks', 0)}",
            f"read={node.get('Shared Read Blocks', 0)}",
        ]
        for key in ("Index Cond", "Filter", "Hash Cond", "Join Filter", "Sort Method"):
            if key in node:
                detail.append(f"{key}: {str(node[key])[:100]}")
        if node.get("Rows Removed by Filter"):
            detail.append(f"removed={_number(node['Rows Removed by Filter'])}")
        lines.append(f"{'  ' * depth}-> {_node_text(node)}  ({', '.join(detail)})")
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    _annotate(plan)
    walk(plan, 0)
    return lines


def report(explained: list[Explained], top: int = 5, plan_lines: int = 40) -> str:
    """The `top` statements by time, each with its costliest nodes, the first with its plan."""
    ranked = sorted(explained, key=lambda e: -e.execution_ms)[:top]
    out: list[str] = []
    for rank, e in enumerate(ranked, 1):
        out.append(f"{rank}. {e.execution_ms:9.1f} ms  {e.label}  (planning {e.planning_ms:.1f} ms)")
        for t in e.triggers:
            out.append(
                f"      trigger {t.get('Trigger Name')}: {t.get('Calls')} calls, {t.get('Time', 0.0):.1f} ms"
            )
        for ms, text in top_nodes(e.plan, 4):
            out.append(f"      {ms:8.1f} ms self  {text}")
        if rank == 1 and e.plan:
            out.extend(f"      | {line}" for line in render(e.plan)[:plan_lines])
    triggers = [t for e in explained for t in e.triggers]
    if triggers:
        ms = sum(t.get("Time", 0.0) for t in triggers)
        calls = sum(t.get("Calls", 0) for t in triggers)
        out.append(f"   triggers (foreign key checks) in all statements: {ms:.1f} ms, {calls} calls")
    out.extend(f"   (skipped {e.label}: {e.error})" for e in explained if e.error)
    return "\n".join(out)


def report_functions(times: list[dict[str, Any]], top: int = 10) -> str:
    """The functions with the most time of their own."""
    return "\n".join(
        f"  {t['self_ms']:9.1f} ms self {t['total_ms']:9.1f} ms total {t['calls']:7} calls  {t['function']}"
        for t in times[:top]
    )
