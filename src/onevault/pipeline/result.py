"""What pipeline runs did: the one result every caller of the runner reports from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NOTHING_DUE = "No processing needed - all events up to date"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PipelineResult:
    """Counts of one batch, or of several added up, with when the work started and how long it took.

    Of the `processed` (claimed) events, `staged` went raw → staging and `loaded` staging → business;
    `quarantined` were held back by validation and `errors` failed (retried later with backoff).
    `batches` counts the batches that found due events.
    """

    processed: int = 0
    staged: int = 0
    loaded: int = 0
    quarantined: int = 0
    errors: int = 0
    batches: int = 0
    started_at: datetime = field(default_factory=_now)
    elapsed_ms: float = 0.0

    @classmethod
    def of_batch(cls, answer: Mapping[str, Any], started_at: datetime, elapsed_ms: float) -> PipelineResult:
        """One batch, from the JSON `staging.auto_process_if_needed` answered."""
        if not answer.get("processed"):
            return cls(started_at=started_at, elapsed_ms=elapsed_ms)
        return cls(
            processed=int(answer["events_processed"]),
            staged=int(answer["raw_to_staging"]),
            loaded=int(answer["staging_to_business"]),
            quarantined=int(answer["quarantined"]),
            errors=int(answer["errors"]),
            batches=1,
            started_at=started_at,
            elapsed_ms=elapsed_ms,
        )

    @property
    def nothing_due(self) -> bool:
        """No due event was found."""
        return self.processed == 0

    @property
    def succeeded(self) -> int:
        """Events processed without an error (quarantined ones included: they were dealt with)."""
        return self.processed - self.errors

    def __add__(self, later: PipelineResult) -> PipelineResult:
        """This work followed by `later`'s."""
        return PipelineResult(
            processed=self.processed + later.processed,
            staged=self.staged + later.staged,
            loaded=self.loaded + later.loaded,
            quarantined=self.quarantined + later.quarantined,
            errors=self.errors + later.errors,
            batches=self.batches + later.batches,
            started_at=self.started_at,
            elapsed_ms=self.elapsed_ms + later.elapsed_ms,
        )

    def counts(self) -> dict[str, int]:
        """The counts by name (for logs and tables)."""
        return {
            "processed": self.processed,
            "staged": self.staged,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "errors": self.errors,
            "batches": self.batches,
        }

    def summary(self) -> str:
        """One line for people: what was done, or that nothing was due."""
        if self.nothing_due:
            return NOTHING_DUE
        return (
            f"Processed {self.processed} event(s) in {round(self.elapsed_ms)} ms: {self.loaded} to business, "
            f"{self.quarantined} quarantined, {self.errors} failed"
        )
