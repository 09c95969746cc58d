"""Routing's message handlers: parse, decide with the domain, write through the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import structlog

from services.routing.domain import lifecycle, triage
from services.routing.domain.lifecycle import Actor, CaseRecord, IllegalTransition
from services.routing.domain.rules import choose_department
from services.routing.settings import RoutingSettings
from services.routing.store import CaseNotFound, RoutingStore, RoutingTx
from shared.events import EventEnvelope, OpinionSubmittedV1, SatisfactionRatedV1
from shared.failpoints import failpoint
from shared.messaging.inbox import Delivery

SERVICE = "routing"
log = structlog.get_logger(__name__)


async def on_opinion_event(
    store: RoutingStore,
    envelope: EventEnvelope,
    delivery: Delivery,
    settings: RoutingSettings,
) -> str:
    """Triage and route one opinion event; returns the outcome (for metrics and tests)."""
    if not envelope.is_a(OpinionSubmittedV1):
        return "ignored"
    opinion = envelope.payload_as(OpinionSubmittedV1)
    structlog.contextvars.bind_contextvars(opinion_id=str(opinion.opinion_id))
    async with store.unit_of_work() as tx:
        if not await tx.claim(delivery, envelope.event_id):
            return "duplicate"
        if await tx.case_for_opinion(opinion.opinion_id) is not None:
            return "duplicate"  # the same opinion published twice under two event ids
        rules = await tx.triage_rules()
        category_id = triage.categorise(opinion.content, opinion.category_id, rules)
        classification = (
            triage.Classification.MAJOR
            if triage.is_major(opinion.content, rules)
            else triage.Classification.INDIVIDUAL
        )
        department_id = choose_department(
            await tx.routing_rules(),
            category_id=category_id,
            town_id=opinion.town_id,
            fallback=await tx.fallback_department(),
        )
        now = datetime.now(UTC)
        outcome = lifecycle.open_case(
            opinion,
            correlation_id=envelope.correlation_id,
            department_id=department_id,
            category_id=category_id,
            kind=await tx.kind_of(category_id),
            classification=classification,
            deadlines=settings.deadlines,
            calendar=await tx.calendar(now),
            now=now,
        )
        await tx.apply(outcome, now=now, new=True, cause=envelope)
        aggregate = None
        if classification is triage.Classification.INDIVIDUAL and category_id is not None:
            aggregate = await _aggregate(tx, outcome.case, settings, envelope, now)
    failpoint("after_handler_commit")
    structlog.contextvars.bind_contextvars(case_id=str(outcome.case.id))
    log.info(
        "case_opened",
        department_id=department_id,
        kind=outcome.case.kind.value,
        state=outcome.case.state.value,
        classification=classification.value,
        aggregate_case_id=str(aggregate) if aggregate else None,
    )
    return "processed"


async def _aggregate(
    tx: RoutingTx,
    case: CaseRecord,
    settings: RoutingSettings,
    cause: EventEnvelope,
    now: datetime,
) -> UUID | None:
    """A common problem: link this case to the open suggestion of its category and town, or
    open one when enough similar opinions have arrived within the window."""
    assert case.category_id is not None
    await tx.conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))", f"aggregate:{case.category_id}:{case.town_id}"
    )
    since = now - timedelta(hours=settings.triage.common_window_hours)
    existing = await tx.open_aggregate(case.category_id, case.town_id, since)
    if existing is not None:
        assert case.opinion_id is not None
        await tx.link(existing, [(case.id, case.opinion_id)], now)
        joined = lifecycle.join_aggregate(await tx.lock_case(existing), case.opinion_id, now)
        await tx.apply(joined, now=now, cause=cause)
        return existing
    similar = await tx.unlinked_similar(case.category_id, case.town_id, since)
    if not triage.is_common(len(similar), settings.triage):
        return None
    outcome = lifecycle.open_aggregate(
        opinion_ids=[opinion_id for _, opinion_id in similar],
        department_id=case.department_id,
        station_id=case.station_id,
        town_id=case.town_id,
        category_id=case.category_id,
        kind=case.kind,
        now=now,
    )
    await tx.apply(outcome, now=now, new=True, cause=cause)
    await tx.link(outcome.case.id, similar, now)
    return outcome.case.id


async def on_evaluation_event(
    store: RoutingStore,
    envelope: EventEnvelope,
    delivery: Delivery,
    settings: RoutingSettings,
) -> str:
    """A voter's rating: satisfied → evaluated, closed; unsatisfied → reopened (once)."""
    if not envelope.is_a(SatisfactionRatedV1):
        return "ignored"
    rating = envelope.payload_as(SatisfactionRatedV1)
    structlog.contextvars.bind_contextvars(case_id=str(rating.case_id))
    async with store.unit_of_work() as tx:
        if not await tx.claim(delivery, envelope.event_id):
            return "duplicate"
        try:
            case = await tx.lock_case(rating.case_id)
        except CaseNotFound:
            log.warning("rating_for_unknown_case")
            return "ignored"
        now = datetime.now(UTC)
        try:
            outcome = lifecycle.rate(
                case,
                level=rating.level,
                reopen_requested=rating.reopen_requested,
                actor=Actor("voter", "voter"),
                deadlines=settings.deadlines,
                calendar=await tx.calendar(now),
                now=now,
            )
        except IllegalTransition as exc:
            log.info("rating_ignored", state=exc.state.value, level=rating.level)
            return "ignored"
        await tx.apply(outcome, now=now, cause=envelope)
    log.info("case_rated", level=rating.level, state=outcome.case.state.value)
    return "processed"
