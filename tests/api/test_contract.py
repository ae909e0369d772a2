"""The API contract: schemathesis drives the live server over HTTP through every documented operation.

It sends what the OpenAPI document allows (and what it forbids) as a tenant holding every scope,
and every one of its checks must pass: no 5xx, only documented statuses, content types, headers and
bodies, schema-valid requests accepted and schema-violating ones refused. The tracking routes store
the events they accept and `/process` runs the pipeline on them, as for any client.

A larger run by hand, against a running service and a token with every scope:
    schemathesis run http://127.0.0.1:8000/openapi.json -H "X-Customer-ID: <customer>" \
        -H "Authorization: Bearer <token>" --checks all --max-examples 1000 --generation-allow-x00 false
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
import schemathesis
from schemathesis import engine
from schemathesis.engine import events
from schemathesis.specs.openapi.schemas import OpenApiSchema
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import make_tenant

from onevault.auth import tokens

# Small enough that all operations take well under a minute on two cores; the seed makes a run
# repeatable.
MAX_EXAMPLES = 40
SEED = 20261201


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """A database deadline well above a loaded machine's stalls: the contract, not the latency, is
    tested here (a write that outlasts the deadline is answered 503, as documented)."""
    return {"db_timeout_seconds": 15.0}


@pytest.fixture
def api_schema(live_server: LiveServer, conn: psycopg.Connection) -> OpenApiSchema:
    """The document the live server serves, with the credentials of a tenant holding every scope."""
    tenant = make_tenant(conn, "contract", tokens.SCOPES)
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": tenant.headers,
            "checks": {"enabled": True},
            # A stats query (alone or in a batch) is refused (422) for what JSON Schema cannot say: a
            # custom range that ends before it starts or spans more than ten years, an order_by
            # naming a field the query does not ask for.
            "operations": [
                {
                    "include-path-regex": "^/api/v1/stats/quer(y|ies)$",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "422", "429", "5xx"]
                        }
                    },
                },
                # An export is refused (422) when its days are in the wrong order.
                {
                    "include-path": "/api/v1/export",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "422", "429", "5xx"]
                        }
                    },
                },
            ],
            "generation": {
                "max-examples": MAX_EXAMPLES,
                # PostgreSQL cannot store U+0000: the document says so, JSON Schema cannot.
                "allow-x00": False,
                # No example database between runs: the same seed gives the same cases.
                "database": "none",
            },
        }
    )
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json", config=config)


def test_every_operation_keeps_the_contract(
    api_schema: OpenApiSchema, caplog: pytest.LogCaptureFixture
) -> None:
    """Each generated request is answered as the document says, by all of schemathesis's checks.

    Run by schemathesis's engine, as its command line does (examples, coverage, fuzzing and
    stateful phases): its pytest integration does not run under pytest 9.2.
    """
    operations = {
        f"{op.method.upper()} {op.path}" for op in (r.ok() for r in api_schema.get_all_operations())
    }
    tested: set[str] = set()
    problems: list[str] = []
    for event in engine.from_schema(api_schema).execute():
        if isinstance(event, events.FatalError):
            raise event.exception
        if isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: error: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.ScenarioFinished):
            if event.status != engine.Status.SKIP and event.recorder.cases:
                tested.add(event.recorder.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == engine.Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        problems.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
    if problems:
        # What the server said about them (a 5xx's cause is in its log, not in the answer).
        problems.extend(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert not problems, "\n\n".join(sorted(set(problems)))
    assert tested == operations
