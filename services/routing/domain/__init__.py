"""Routing's rules: which department answers, by when, and what a case may do next.

Pure: no I/O, no clock reads. `lifecycle` (the state machine), `deadlines` (periods and
timers), `calendar` (working days), `triage` (category and classification), `rules`
(choosing the department).
"""

from services.routing.domain.calendar import (
    CHINA,
    WorkCalendar,
    add_working_days,
    default_calendar,
    is_working_day,
)
from services.routing.domain.deadlines import (
    CaseKind,
    DeadlineKind,
    DeadlineSettings,
    KindDeadlines,
    Period,
    ReminderSettings,
    TimerAction,
    TimerSpec,
    plan_timers,
)
from services.routing.domain.lifecycle import (
    TRANSITIONS,
    Action,
    Actor,
    CaseRecord,
    CaseState,
    HandlingReport,
    IllegalTransition,
    Outcome,
    RuleViolation,
    Step,
    next_state,
)
from services.routing.domain.rules import RoutingRule, choose_department
from services.routing.domain.triage import Classification, KeywordRule, TriageSettings

__all__ = [
    "CHINA",
    "TRANSITIONS",
    "Action",
    "Actor",
    "CaseKind",
    "CaseRecord",
    "CaseState",
    "Classification",
    "DeadlineKind",
    "DeadlineSettings",
    "HandlingReport",
    "IllegalTransition",
    "KeywordRule",
    "KindDeadlines",
    "Outcome",
    "Period",
    "ReminderSettings",
    "RoutingRule",
    "RuleViolation",
    "Step",
    "TimerAction",
    "TimerSpec",
    "TriageSettings",
    "WorkCalendar",
    "add_working_days",
    "choose_department",
    "default_calendar",
    "is_working_day",
    "next_state",
    "plan_timers",
]
