"""Evaluation's rules for the figures it keeps. No I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DepartmentSummary:
    department_id: str
    assigned: int
    notified: int

    @property
    def notified_rate(self) -> float | None:
        """Share of assigned cases whose department has been told (None with no cases)."""
        return None if self.assigned == 0 else self.notified / self.assigned
